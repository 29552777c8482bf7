//! System-wide functions and the protocol's own: credentials check, API level, system information,
//! asynchronous operation status, and recovery of a lost reply.

use super::{decode, smapi_function};
use crate::codes::functional_level;
use crate::layout::{Field, Layout};

/// `Check_Authentication`: a cheap probe that the user ID and password are valid (no parameters, no output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckAuthentication {
    pub target: String,
}

impl CheckAuthentication {
    pub fn new(target: impl Into<String>) -> Self {
        CheckAuthentication { target: target.into() }
    }
}

smapi_function!(CheckAuthentication, "Check_Authentication", (),
    parameters(self, _writer) { Ok(()) },
    output(_reply) { Ok(()) }
);

/// `Query_API_Functional_Level`: the level is the reason code of the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryApiFunctionalLevel {
    pub target: String,
}

impl QueryApiFunctionalLevel {
    pub fn new(target: impl Into<String>) -> Self {
        QueryApiFunctionalLevel { target: target.into() }
    }
}

/// The SMAPI functional level: 0 for z/VM 5.3, 540, 610..621, 630, 640..709 for 6.4, 710..719 for 7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiFunctionalLevel {
    pub level: i32,
}

impl ApiFunctionalLevel {
    /// The z/VM release the level stands for, in words.
    pub fn description(&self) -> String {
        functional_level(self.level)
    }
}

smapi_function!(QueryApiFunctionalLevel, "Query_API_Functional_Level", ApiFunctionalLevel,
    parameters(self, _writer) { Ok(()) },
    output(reply) { Ok(ApiFunctionalLevel { level: reply.reason_code }) }
);

/// `System_Info_Query`: six NUL-terminated strings with no lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfoQuery {
    pub target: String,
}

impl SystemInfoQuery {
    pub fn new(target: impl Into<String>) -> Self {
        SystemInfoQuery { target: target.into() }
    }
}

const SYSTEM_INFO_LAYOUT: Layout = Layout {
    fields: &[
        Field::NulTerminated("time_zone"),
        Field::NulTerminated("date_time"),
        Field::NulTerminated("cp_level"),
        Field::NulTerminated("generation_time"),
        Field::NulTerminated("ipl_time"),
        Field::NulTerminated("storage"),
    ],
    optional: false,
};

/// The host's clock, CP level and storage, as CP reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    /// For example `EDT West 04.00.00`.
    pub time_zone: String,
    /// For example `13:59:27 EDT SUNDAY 2019-04-28`; see [`SystemInfo::clock`].
    pub date_time: String,
    /// For example `z/VM Version 7 Release 1.0, service level 1801 (64-bit)`.
    pub cp_level: String,
    /// When CP was generated, for example `2019-02-22 02:44:15 EDT`.
    pub generation_time: String,
    /// When the system was IPLed, for example `2019-04-28 13:39:31 EDT`.
    pub ipl_time: String,
    /// For example `4G CONFIGURED = 4G INC = 1M STANDBY = 0  RESERVED = 0`; see [`SystemInfo::storage_info`].
    pub storage: String,
}

/// The clock reading of [`SystemInfo::date_time`], split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockReading {
    pub time: String,
    pub zone: String,
    pub weekday: String,
    pub date: String,
}

impl ClockReading {
    /// `date time zone`, the order the other times of the reply use (`2019-04-28 13:59:27 EDT`).
    pub fn to_date_time_zone(&self) -> String {
        format!("{} {} {}", self.date, self.time, self.zone)
    }
}

/// The storage line of [`SystemInfo::storage`], split into its values (each keeps CP's unit suffix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageInfo {
    pub storage: String,
    pub configured: String,
    pub increment: String,
    pub standby: String,
    pub reserved: String,
}

impl SystemInfo {
    /// The clock reading, when it has the four parts `time zone weekday date`.
    pub fn clock(&self) -> Option<ClockReading> {
        let mut parts = self.date_time.split_whitespace();
        let reading = ClockReading {
            time: parts.next()?.to_owned(),
            zone: parts.next()?.to_owned(),
            weekday: parts.next()?.to_owned(),
            date: parts.next()?.to_owned(),
        };
        parts.next().is_none().then_some(reading)
    }

    /// The storage line's values: the first word, then each `NAME = value`.
    pub fn storage_info(&self) -> StorageInfo {
        let words: Vec<&str> = self.storage.split_whitespace().collect();
        let mut info =
            StorageInfo { storage: words.first().copied().unwrap_or_default().to_owned(), ..Default::default() };
        for window in words.windows(3) {
            if window[1] != "=" {
                continue;
            }
            let value = window[2].to_owned();
            match window[0] {
                "CONFIGURED" => info.configured = value,
                "INC" | "INCREMENT" => info.increment = value,
                "STANDBY" => info.standby = value,
                "RESERVED" => info.reserved = value,
                _ => {}
            }
        }
        info
    }
}

smapi_function!(SystemInfoQuery, "System_Info_Query", SystemInfo,
    parameters(self, _writer) { Ok(()) },
    output(reply) {
        let mut record = decode(&SYSTEM_INFO_LAYOUT, reply)?;
        Ok(SystemInfo {
            time_zone: record.text("time_zone")?,
            date_time: record.text("date_time")?,
            cp_level: record.text("cp_level")?,
            generation_time: record.text("generation_time")?,
            ipl_time: record.text("ipl_time")?,
            storage: record.text("storage")?,
        })
    }
);

/// `System_Information_Query`: the system's facts as `KEYWORD=value...` lines (a framed NUL-string list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInformationQuery {
    pub target: String,
}

impl SystemInformationQuery {
    pub fn new(target: impl Into<String>) -> Self {
        SystemInformationQuery { target: target.into() }
    }
}

const SYSTEM_INFORMATION_LAYOUT: Layout =
    Layout { fields: &[Field::NulList("system_information_data")], optional: true };

smapi_function!(SystemInformationQuery, "System_Information_Query", Vec<String>,
    parameters(self, _writer) { Ok(()) },
    output(reply) { decode(&SYSTEM_INFORMATION_LAYOUT, reply)?.texts("system_information_data") }
);

/// `Query_Asynchronous_Operation_DM`: how a DirMaint operation started by an earlier call is doing. Sent on a
/// new connection with the same target as the call that started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAsynchronousOperationDm {
    pub target: String,
    pub operation_id: u32,
}

impl QueryAsynchronousOperationDm {
    pub fn new(target: impl Into<String>, operation_id: u32) -> Self {
        QueryAsynchronousOperationDm { target: target.into(), operation_id }
    }
}

/// The state of an asynchronous operation, from the reason code of a successful query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationStatus {
    /// RS 100 (and RS 0, which zthin also reads as done).
    Succeeded,
    /// RS 104.
    InProgress,
    /// RS 108.
    Failed,
    /// Any other reason code.
    Unknown(i32),
}

smapi_function!(QueryAsynchronousOperationDm, "Query_Asynchronous_Operation_DM", OperationStatus,
    parameters(self, writer) {
        writer.uint4(self.operation_id);
        Ok(())
    },
    output(reply) {
        Ok(match reply.reason_code {
            0 | 100 => OperationStatus::Succeeded,
            104 => OperationStatus::InProgress,
            108 => OperationStatus::Failed,
            other => OperationStatus::Unknown(other),
        })
    }
);

/// `Response_Recovery`: asks again for the reply to a request whose connection dropped after its request id
/// arrived. The reply is the original one (return code, reason code, output); 4/4 means the server knows no
/// such request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRecovery {
    pub target: String,
    pub failed_request_id: u32,
}

impl ResponseRecovery {
    pub fn new(target: impl Into<String>, failed_request_id: u32) -> Self {
        ResponseRecovery { target: target.into(), failed_request_id }
    }
}

smapi_function!(ResponseRecovery, "Response_Recovery", Vec<u8>,
    parameters(self, writer) {
        writer.uint4(self.failed_request_id);
        Ok(())
    },
    output(reply) { Ok(reply.output.clone()) }
);
