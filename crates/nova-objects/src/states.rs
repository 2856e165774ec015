//! nova's instance state vocabularies: `task_state`, `vm_state` and
//! `power_state`, spelled exactly as nova stores them.

use std::fmt;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The string nova stores in the database and sends on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// `nova.compute.task_states`: what an instance is busy with.
    TaskState {
        Scheduling => "scheduling",
        BlockDeviceMapping => "block_device_mapping",
        Networking => "networking",
        Spawning => "spawning",
        ImageSnapshot => "image_snapshot",
        ImageSnapshotPending => "image_snapshot_pending",
        ImagePendingUpload => "image_pending_upload",
        ImageUploading => "image_uploading",
        ImageBackup => "image_backup",
        UpdatingPassword => "updating_password",
        ResizePrep => "resize_prep",
        ResizeMigrating => "resize_migrating",
        ResizeMigrated => "resize_migrated",
        ResizeFinish => "resize_finish",
        ResizeReverting => "resize_reverting",
        ResizeConfirming => "resize_confirming",
        Rebooting => "rebooting",
        RebootPending => "reboot_pending",
        RebootStarted => "reboot_started",
        RebootingHard => "rebooting_hard",
        RebootPendingHard => "reboot_pending_hard",
        RebootStartedHard => "reboot_started_hard",
        Pausing => "pausing",
        Unpausing => "unpausing",
        Suspending => "suspending",
        Resuming => "resuming",
        PoweringOff => "powering-off",
        PoweringOn => "powering-on",
        Rescuing => "rescuing",
        Unrescuing => "unrescuing",
        Rebuilding => "rebuilding",
        RebuildBlockDeviceMapping => "rebuild_block_device_mapping",
        RebuildSpawning => "rebuild_spawning",
        Migrating => "migrating",
        Deleting => "deleting",
        SoftDeleting => "soft-deleting",
        Restoring => "restoring",
        Shelving => "shelving",
        ShelvingImagePendingUpload => "shelving_image_pending_upload",
        ShelvingImageUploading => "shelving_image_uploading",
        ShelvingOffloading => "shelving_offloading",
        Unshelving => "unshelving",
    }
}

impl TaskState {
    /// The task states of the snapshot path that nova's `_init_instance`
    /// clears at start-up (`image_backup` is not among them in nova; our
    /// recovery treats it the same way, see nova-compute's recovery).
    pub const SNAPSHOT_STATES: &'static [TaskState] = &[
        TaskState::ImageSnapshotPending,
        TaskState::ImageSnapshot,
        TaskState::ImagePendingUpload,
        TaskState::ImageUploading,
        TaskState::ImageBackup,
    ];
}

string_enum! {
    /// `nova.compute.vm_states`: the stable state of an instance.
    VmState {
        Active => "active",
        Building => "building",
        Paused => "paused",
        Suspended => "suspended",
        Stopped => "stopped",
        Rescued => "rescued",
        Resized => "resized",
        SoftDeleted => "soft-delete",
        Deleted => "deleted",
        Error => "error",
        Shelved => "shelved",
        ShelvedOffloaded => "shelved_offloaded",
    }
}

/// `nova.compute.power_state`: an integer in the database and on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    NoState = 0,
    Running = 1,
    Paused = 3,
    Shutdown = 4,
    Crashed = 6,
    Suspended = 7,
}

impl PowerState {
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => PowerState::NoState,
            1 => PowerState::Running,
            3 => PowerState::Paused,
            4 => PowerState::Shutdown,
            6 => PowerState::Crashed,
            7 => PowerState::Suspended,
            _ => return None,
        })
    }

    pub fn code(self) -> i64 {
        self as i64
    }

    /// nova's `power_state.STATE_MAP` names, used in notifications.
    pub fn name(self) -> &'static str {
        match self {
            PowerState::NoState => "pending",
            PowerState::Running => "running",
            PowerState::Paused => "paused",
            PowerState::Shutdown => "shutdown",
            PowerState::Crashed => "crashed",
            PowerState::Suspended => "suspended",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_states_round_trip_through_their_nova_spelling() {
        for state in TaskState::ALL {
            assert_eq!(TaskState::parse(state.as_str()), Some(*state));
        }
        assert_eq!(TaskState::PoweringOff.as_str(), "powering-off");
        assert_eq!(TaskState::parse("image_uploading"), Some(TaskState::ImageUploading));
        assert_eq!(TaskState::parse("no_such_state"), None);
    }

    #[test]
    fn vm_states_use_nova_spelling() {
        assert_eq!(VmState::SoftDeleted.as_str(), "soft-delete");
        assert_eq!(VmState::parse("active"), Some(VmState::Active));
    }

    #[test]
    fn power_state_codes_match_nova() {
        assert_eq!(PowerState::from_code(4), Some(PowerState::Shutdown));
        assert_eq!(PowerState::Suspended.code(), 7);
        assert_eq!(PowerState::from_code(2), None);
    }
}
