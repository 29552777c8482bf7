//! Guests at run time: status, activation (logon), deactivation (logoff), live configuration.

use super::{decode, smapi_function};
use crate::error::{DecodeError, EncodeError};
use crate::layout::{Field, Layout, Record};
use crate::response::Reply;
use crate::wire::Limits;

/// `Image_Status_Query`: which of the target guests are logged on. The target may be a guest, `*` (all
/// active guests) or a name list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStatusQuery {
    pub target: String,
}

impl ImageStatusQuery {
    pub fn new(target: impl Into<String>) -> Self {
        ImageStatusQuery { target: target.into() }
    }
}

const NAME_ARRAY_LAYOUT: Layout = Layout { fields: &[Field::StringArray("image_names")], optional: true };

/// The answer of `Image_Status_Query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStatus {
    /// The active guests among the targets, upper case.
    pub active_images: Vec<String>,
    /// True when the server answered 0/12: the target is not logged on.
    pub target_not_active: bool,
}

smapi_function!(ImageStatusQuery, "Image_Status_Query", ImageStatus,
    parameters(self, _writer) { Ok(()) },
    output(reply) {
        let mut record = decode(&NAME_ARRAY_LAYOUT, reply)?;
        Ok(ImageStatus { active_images: record.texts("image_names")?, target_not_active: reply.reason_code == 12 })
    }
);

/// The output of `Image_Activate` and `Image_Deactivate`: counts and, for a name list, the guests that failed.
const ACTIVATION_LAYOUT: Layout = Layout {
    fields: &[
        Field::Int4("succeeded"),
        Field::Int4("failed"),
        Field::StructArray(
            "failing",
            &[Field::String("image_name"), Field::Int4("return_code"), Field::Int4("reason_code")],
        ),
    ],
    optional: true,
};

/// One guest of a name list that did not change state, with its own return and reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    pub image_name: String,
    pub return_code: i32,
    pub reason_code: i32,
}

/// How many guests changed state. For a single guest the server usually sends no counts at all (`None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivationResult {
    pub succeeded: Option<i32>,
    pub failed: Option<i32>,
    pub failures: Vec<ImageFailure>,
}

impl ActivationResult {
    fn decode(reply: &Reply) -> Result<Self, DecodeError> {
        let mut record = decode(&ACTIVATION_LAYOUT, reply)?;
        let failures = record.records("failing")?.into_iter().map(image_failure).collect::<Result<_, _>>()?;
        Ok(ActivationResult {
            succeeded: record.optional_int4("succeeded")?,
            failed: record.optional_int4("failed")?,
            failures,
        })
    }

    /// The failures of a failed name-list call (200/28, 200/32), as text for the error message.
    fn diagnostics(reply: &Reply) -> Vec<String> {
        match ActivationResult::decode(reply) {
            Ok(result) => result
                .failures
                .iter()
                .map(|failure| {
                    format!(
                        "{}: return code {}, reason code {}",
                        failure.image_name, failure.return_code, failure.reason_code
                    )
                })
                .collect(),
            Err(_) => crate::request::opaque_diagnostics(&reply.output),
        }
    }
}

fn image_failure(mut record: Record) -> Result<ImageFailure, DecodeError> {
    Ok(ImageFailure {
        image_name: record.text("image_name")?,
        return_code: record.int4("return_code")?,
        reason_code: record.int4("reason_code")?,
    })
}

/// `Image_Activate`: logs the target guest (or every guest of a name list) on. 200/8 means already active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageActivate {
    pub target: String,
}

impl ImageActivate {
    pub fn new(target: impl Into<String>) -> Self {
        ImageActivate { target: target.into() }
    }
}

smapi_function!(ImageActivate, "Image_Activate", ActivationResult,
    parameters(self, _writer) { Ok(()) },
    output(reply) { ActivationResult::decode(reply) },
    diagnostics(reply) { ActivationResult::diagnostics(reply) }
);

/// When `Image_Deactivate` forces the guest off: `IMMED`, `WITHIN n` seconds (1-65535), `BY hh:mm[:ss]`, or
/// empty for the system's signal timeout. Text given to [`ForceTime::parse`] keeps its spelling.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForceTime(String);

impl ForceTime {
    /// The system's default signal timeout (an empty parameter).
    pub fn system_default() -> Self {
        ForceTime::default()
    }

    pub fn immediately() -> Self {
        ForceTime("IMMED".into())
    }

    /// Within `seconds` (1-65535).
    pub fn within(seconds: u16) -> Result<Self, EncodeError> {
        if seconds == 0 {
            return Err(EncodeError::Invalid { field: "force_time", reason: "WITHIN needs 1 to 65535 seconds".into() });
        }
        Ok(ForceTime(format!("WITHIN {seconds}")))
    }

    /// By a time of day.
    pub fn by(hour: u8, minute: u8, second: Option<u8>) -> Result<Self, EncodeError> {
        if hour > 23 || minute > 59 || second.is_some_and(|second| second > 59) {
            return Err(EncodeError::Invalid {
                field: "force_time",
                reason: "BY needs a time of day hh:mm[:ss]".into(),
            });
        }
        Ok(ForceTime(match second {
            Some(second) => format!("BY {hour:02}:{minute:02}:{second:02}"),
            None => format!("BY {hour:02}:{minute:02}"),
        }))
    }

    /// Checks `text` against the grammar (case-insensitively) and keeps it as written.
    pub fn parse(text: &str) -> Result<Self, EncodeError> {
        let invalid = || EncodeError::Invalid {
            field: "force_time",
            reason: format!("{text:?} is not IMMED, WITHIN seconds or BY hh:mm[:ss]"),
        };
        let upper = text.to_ascii_uppercase();
        let words: Vec<&str> = upper.split_whitespace().collect();
        let valid = match words.as_slice() {
            [] => true,
            ["IMMED"] => true,
            ["WITHIN", seconds] => seconds.parse::<u16>().is_ok_and(|seconds| seconds > 0),
            ["BY", time] => {
                let parts: Vec<&str> = time.split(':').collect();
                (2..=3).contains(&parts.len())
                    && parts.iter().all(|part| part.len() == 2 && part.bytes().all(|byte| byte.is_ascii_digit()))
            }
            _ => false,
        };
        if !valid {
            return Err(invalid());
        }
        Ok(ForceTime(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Image_Deactivate`: logs the target guest (or a name list) off. 200/12 means not active, 200/16 already
/// going down; a success with reason code n means it went down within n seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDeactivate {
    pub target: String,
    pub force_time: ForceTime,
}

impl ImageDeactivate {
    pub fn new(target: impl Into<String>, force_time: ForceTime) -> Self {
        ImageDeactivate { target: target.into(), force_time }
    }
}

/// The answer of `Image_Deactivate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeactivationResult {
    pub result: ActivationResult,
    /// The reason code of a success, when not 0: the guest went down within that many seconds.
    pub within_seconds: Option<i32>,
}

smapi_function!(ImageDeactivate, "Image_Deactivate", DeactivationResult,
    parameters(self, writer) { writer.string("force_time", self.force_time.as_str(), Limits::range(0, 12)) },
    output(reply) {
        let within_seconds = (reply.return_code == 0 && reply.reason_code != 0).then_some(reply.reason_code);
        Ok(DeactivationResult { result: ActivationResult::decode(reply)?, within_seconds })
    },
    diagnostics(reply) { ActivationResult::diagnostics(reply) }
);

/// `Image_Active_Configuration_Query`: memory, CPU share, CPUs and devices of a logged-on guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageActiveConfigurationQuery {
    pub target: String,
}

impl ImageActiveConfigurationQuery {
    pub fn new(target: impl Into<String>) -> Self {
        ImageActiveConfigurationQuery { target: target.into() }
    }
}

const ACTIVE_CONFIGURATION_LAYOUT: Layout = Layout {
    fields: &[
        Field::Int4("memory_size"),
        Field::Int1("memory_unit"),
        Field::Int1("share_type"),
        Field::String("share_value"),
        Field::Int4("number_cpus"),
        Field::StructArray("cpus", &[Field::Int4("cpu_number"), Field::String("cpu_id"), Field::Int1("cpu_status")]),
        Field::StructArray("devices", &[Field::Int1("device_type"), Field::String("device_address")]),
    ],
    optional: false,
};

/// Generates a one-byte code enum with an `Unknown` fallback, so a value a newer z/VM adds still decodes.
macro_rules! int1_code {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant,)*
            Unknown(u8),
        }

        impl $name {
            pub fn from_code(code: u8) -> Self {
                match code {
                    $($code => $name::$variant,)*
                    other => $name::Unknown(other),
                }
            }

            pub fn code(self) -> u8 {
                match self {
                    $($name::$variant => $code,)*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

int1_code!(
    /// The unit of [`ActiveConfiguration::memory_size`].
    MemoryUnit { Kilobytes = 1, Megabytes = 2, Gigabytes = 3, }
);

int1_code!(
    /// How the guest's CPU share is expressed.
    ShareType { Relative = 1, Absolute = 2, }
);

int1_code!(
    /// The state of one virtual CPU.
    CpuStatus { Base = 1, Stopped = 2, CheckStopped = 3, NonBaseActive = 4, }
);

int1_code!(
    /// The kind of one virtual device.
    DeviceType { Console = 1, Reader = 2, Punch = 3, Printer = 4, Dasd = 5, }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCpu {
    pub number: i32,
    pub id: String,
    pub status: CpuStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveDevice {
    pub device_type: DeviceType,
    pub address: String,
}

/// The answer of `Image_Active_Configuration_Query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveConfiguration {
    pub memory_size: i32,
    pub memory_unit: MemoryUnit,
    pub share_type: ShareType,
    /// The share, as text (it may have a decimal point).
    pub share_value: String,
    pub number_cpus: i32,
    pub cpus: Vec<ActiveCpu>,
    pub devices: Vec<ActiveDevice>,
}

smapi_function!(ImageActiveConfigurationQuery, "Image_Active_Configuration_Query", ActiveConfiguration,
    parameters(self, _writer) { Ok(()) },
    output(reply) {
        let mut record = decode(&ACTIVE_CONFIGURATION_LAYOUT, reply)?;
        let cpus = record
            .records("cpus")?
            .into_iter()
            .map(|mut cpu| {
                Ok(ActiveCpu {
                    number: cpu.int4("cpu_number")?,
                    id: cpu.text("cpu_id")?,
                    status: CpuStatus::from_code(cpu.int1("cpu_status")?),
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        let devices = record
            .records("devices")?
            .into_iter()
            .map(|mut device| {
                Ok(ActiveDevice {
                    device_type: DeviceType::from_code(device.int1("device_type")?),
                    address: device.text("device_address")?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(ActiveConfiguration {
            memory_size: record.int4("memory_size")?,
            memory_unit: MemoryUnit::from_code(record.int1("memory_unit")?),
            share_type: ShareType::from_code(record.int1("share_type")?),
            share_value: record.text("share_value")?,
            number_cpus: record.int4("number_cpus")?,
            cpus,
            devices,
        })
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_time_grammar() {
        assert_eq!(ForceTime::parse("immed").unwrap().as_str(), "immed");
        assert_eq!(ForceTime::parse("WITHIN 300").unwrap().as_str(), "WITHIN 300");
        assert_eq!(ForceTime::parse("by 23:05:09").unwrap().as_str(), "by 23:05:09");
        assert_eq!(ForceTime::parse("").unwrap(), ForceTime::system_default());
        assert!(ForceTime::parse("WITHIN 0").is_err());
        assert!(ForceTime::parse("WITHIN 70000").is_err());
        assert!(ForceTime::parse("soon").is_err());
        assert!(ForceTime::parse("BY 1:2").is_err());
        assert_eq!(ForceTime::within(30).unwrap().as_str(), "WITHIN 30");
        assert_eq!(ForceTime::by(7, 5, None).unwrap().as_str(), "BY 07:05");
        assert!(ForceTime::by(24, 0, None).is_err());
    }
}
