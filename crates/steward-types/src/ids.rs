//! Typed identifiers: a `SystemId` cannot be passed where a `GroupId` is expected.
//!
//! Every ID is a random UUID, shown and stored in its hyphenated lower-case form.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random ID.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// Parses the hyphenated or simple form; `None` if the text is not a UUID.
            pub fn parse(text: &str) -> Option<Self> {
                Uuid::try_parse(text).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

typed_id!(
    /// A managed system (anything with an enrolled agent).
    SystemId
);
typed_id!(
    /// A package in the server's repository.
    PackageId
);
typed_id!(
    /// A static or dynamic group of systems.
    GroupId
);
typed_id!(
    /// A user of the Steward API.
    UserId
);
typed_id!(
    /// An API token belonging to a user.
    TokenId
);
typed_id!(
    /// A token agents use to enroll.
    EnrollmentTokenId
);
typed_id!(
    /// A hypervisor host Steward provisions guests on.
    HostId
);
typed_id!(
    /// An isolated virtual network on a host (the VSwitch or guest LAN of z/VM).
    NetworkId
);
typed_id!(
    /// The hardware shape of a guest.
    ServerTemplateId
);
typed_id!(
    /// A captured or imported Linux installation.
    OsTemplateId
);
typed_id!(
    /// A guest defined on a host.
    VirtualServerId
);
typed_id!(
    /// A long-running operation (a saga).
    OperationId
);
typed_id!(
    /// A server complex: a tiered group of cloned guests with enforced properties.
    ComplexId
);
typed_id!(
    /// An event (a monitor raised or cleared, a complex member deviating, ...).
    EventId
);
typed_id!(
    /// A scheduled job: a task run on a system or group, once, on a cron schedule or on demand.
    JobId
);
typed_id!(
    /// One run of a job, with a result per target system.
    JobRunId
);
typed_id!(
    /// A resource monitor: a threshold on a metric of a system or of every member of a group.
    MonitorId
);
typed_id!(
    /// An event action plan: event filters bound to actions.
    EventActionPlanId
);
typed_id!(
    /// A maintenance window: a time when a system's or a group's events trigger no actions.
    MaintenanceWindowId
);
typed_id!(
    /// One action of a plan to carry out for one event (or one flapping notice), with its attempts.
    DeliveryId
);
