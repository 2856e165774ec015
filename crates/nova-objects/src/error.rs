//! Errors of the object layer: malformed primitives here, and the conductor's
//! answers (typed nova exceptions) in `conductor`.

/// A primitive or reply that does not have the shape nova gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("malformed nova object: {0}")]
    Malformed(String),
}
