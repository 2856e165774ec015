//! What can go wrong while driving the stack or one of its guests: one error
//! type for the whole harness, so that `stack` (host-side commands, libvirtd)
//! and `guest` (agent traffic) return the same thing.

use std::time::Duration;

/// What can go wrong while driving the stack or a guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A libvirt call (other than an agent command) failed; shown as
    /// libvirt's own message.
    #[error(transparent)]
    Libvirt(#[from] virt::error::Error),
    /// A host-side command (a guest.sh function, qemu-img) could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line, for the reader of the failure.
        command: String,
        /// Why the process could not be spawned.
        #[source]
        source: std::io::Error,
    },
    /// A host-side command ran and failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line, for the reader of the failure.
        command: String,
        /// Its exit status and the end of its stderr.
        detail: String,
    },
    /// A host-side command succeeded but printed something that is not the
    /// JSON it promises.
    #[error("`{command}` printed unparsable JSON")]
    Unparsable {
        /// The command line, for the reader of the failure.
        command: String,
        /// The JSON parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// libvirt or the agent refused a command: no agent channel, agent not
    /// connected (yet), or the command failed inside the guest.
    #[error("guest {guest}: agent command {command} failed: {message}")]
    Agent {
        /// The guest's domain name.
        guest: String,
        /// The agent command (`guest-exec`, `guest-file-read`, ...).
        command: String,
        /// libvirt's message, which carries the agent's own error text.
        message: String,
    },
    /// The agent answered, but not in the shape its QAPI schema promises.
    #[error("guest {guest}: unexpected reply to {command}: {reply}")]
    Protocol {
        /// The guest's domain name.
        guest: String,
        /// The agent command that was answered.
        command: String,
        /// The reply as received.
        reply: String,
    },
    /// A bounded wait ran out; `context` holds what explains it (for a boot,
    /// the console tail).
    #[error("guest {guest}: {what} after {after:.1?}{context}")]
    Timeout {
        /// The guest's domain name.
        guest: String,
        /// What was waited for and did not happen.
        what: String,
        /// How long the wait lasted.
        after: Duration,
        /// Extra text that explains the failure (last agent error, console
        /// tail); empty when there is none.
        context: String,
    },
    /// The guest did not do what was asked, e.g. a command of
    /// [`crate::Guest::sh`] exited non-zero.
    #[error("guest {guest}: {message}")]
    Guest {
        /// The guest's domain name.
        guest: String,
        /// What the guest did instead.
        message: String,
    },
}
