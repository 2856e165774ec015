//! nova's instance state vocabularies: `task_state`, `vm_state` and
//! `power_state`, spelled exactly as nova stores them.

use std::fmt;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs, reason = "each variant is its nova spelling, given beside it")]
        pub enum $name { $($variant,)+ }

        impl $name {
            /// Every value, in nova's order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The string nova stores in the database and sends on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The value nova spells `text`; `None` for any other text.
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

/// `nova.compute.power_state`: the instance's power state as nova stores it
/// (an integer in the database and on the wire) and names it in
/// notifications. This is nova's vocabulary, owned here; the hypervisor's
/// own states (libvirt's `virDomainState`) are libvirt-snapshot's
/// `DomainState`, and nova-compute maps one to the other as nova's libvirt
/// driver does (`LIBVIRT_POWER_STATE`). The codes happen to match
/// `virDomainState` for backward compatibility, but are not the same thing;
/// 2 and 5 are `_UNUSED` placeholders in nova's `InstancePowerState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// 0, `NOSTATE` (`pending` in notifications): no state known yet, or
    /// the hypervisor reports none.
    NoState = 0,
    /// 1, `RUNNING`: the guest's vCPUs are running.
    Running = 1,
    /// 3, `PAUSED`: the guest is paused (vCPUs stopped, memory resident).
    Paused = 3,
    /// 4, `SHUTDOWN`: the guest is off (libvirt's shut off and shutdown).
    Shutdown = 4,
    /// 6, `CRASHED`: the guest crashed.
    Crashed = 6,
    /// 7, `SUSPENDED`: the guest's state is saved to disk (libvirt's
    /// pmsuspended; nova's suspend is a managed save).
    Suspended = 7,
}

impl PowerState {
    /// Every power state, in code order.
    pub const ALL: &'static [PowerState] = &[
        PowerState::NoState,
        PowerState::Running,
        PowerState::Paused,
        PowerState::Shutdown,
        PowerState::Crashed,
        PowerState::Suspended,
    ];

    /// The state for a code as nova stores it; `None` for codes nova does
    /// not define (2, 5, anything above 7).
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

    /// The integer nova stores and sends (`Instance.power_state`).
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
        assert_eq!(PowerState::from_code(5), None);
        for state in PowerState::ALL {
            assert_eq!(PowerState::from_code(state.code()), Some(*state));
        }
        assert_eq!(PowerState::NoState.name(), "pending");
    }
}
