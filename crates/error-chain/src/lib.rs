//! One way to print an error with its causes, for every crate of the workspace.
//!
//! Owns: the rule that an error's `Display` says only what failed at its own
//! level and keeps what caused it as [`std::error::Error::source`], and the
//! one renderer that puts the whole chain on a log line or into a nova
//! exception message: `error: cause: cause`.
//!
//! Must not know: any particular error type.
//!
//! Foreign errors that hide their cause in `source()` (reqwest's "error
//! sending request", lapin's connection errors) read well only through it.

use std::error::Error;
use std::fmt;

/// Displays an error and every cause below it, each once, joined by `": "`.
///
/// A cause whose text the level above already repeated (some foreign errors
/// print their source inside their own message) is not printed a second time.
///
/// Generic over the error so that a `Chain` of a `Send + Sync` error is
/// itself `Send`, and may live across an `.await`.
pub struct Chain<'a, E: Error + ?Sized = dyn Error + 'a>(pub &'a E);

impl<E: Error + ?Sized> Clone for Chain<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E: Error + ?Sized> Copy for Chain<'_, E> {}

impl<E: Error + ?Sized> fmt::Display for Chain<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !text.is_empty() && !shown.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            source = cause.source();
        }
        Ok(())
    }
}

impl<E: Error + ?Sized> fmt::Debug for Chain<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `Chain(error).to_string()`, for the places that need an owned message.
pub fn error_chain<E: Error + ?Sized>(error: &E) -> String {
    Chain(error).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn every_cause_once_in_order() {
        let e = E(
            "upload failed",
            Some(Box::new(E("error sending request", Some(Box::new(E("connection refused", None)))))),
        );
        assert_eq!(error_chain(&e), "upload failed: error sending request: connection refused");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = E("cannot connect: connection refused", Some(Box::new(E("connection refused", None))));
        assert_eq!(error_chain(&e), "cannot connect: connection refused");
    }

    #[test]
    fn a_chain_of_a_send_error_can_cross_an_await() {
        fn assert_send<T: Send>(_: T) {}
        let e = std::io::Error::other("disk full");
        assert_send(Chain(&e));
        assert_eq!(Chain(&e).to_string(), "disk full");
    }

    #[test]
    fn an_error_without_causes_is_its_message() {
        assert_eq!(error_chain(&E("alone", None)), "alone");
    }
}
