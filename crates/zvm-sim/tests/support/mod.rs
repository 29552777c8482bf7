//! Starting a simulator on 127.0.0.1 with known users and short durations, and clients for it.

#![allow(dead_code)]

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use smapi::{ClientConfig, Credentials, Error, SmapiClient};
use zvm_sim::{AuthEntry, Simulator, SimulatorConfig, Timing};

pub const ADMIN: &str = "ADMIN";
pub const ADMIN_PASSWORD: &str = "Adm1n-Pass";
pub const OPERATOR: &str = "OPER1";
pub const OPERATOR_PASSWORD: &str = "oper-pass";

/// A configuration with an administrator (ALL on ALL), an operator allowed only on itself and to query the
/// directory, the default pool, and short durations.
pub fn config(state_file: Option<PathBuf>) -> SimulatorConfig {
    let mut config = SimulatorConfig::new("127.0.0.1:0".parse().expect("loopback address"));
    config.state_file = state_file;
    config.users.push(format!("{ADMIN}:{ADMIN_PASSWORD}").parse().expect("admin user"));
    config.users.push(format!("{OPERATOR}:{OPERATOR_PASSWORD}").parse().expect("operator user"));
    config.authorizations.push(format!("{OPERATOR}:=:ALL").parse::<AuthEntry>().expect("own entry"));
    config.authorizations.push(format!("{OPERATOR}:ALL:Image_Query_DM").parse::<AuthEntry>().expect("query"));
    config.timing = Timing {
        operation: Duration::from_millis(50),
        copy_per_thousand_units: Duration::from_millis(10),
        guest_shutdown: Duration::from_millis(100),
        signal_timeout: Duration::from_secs(300),
    };
    config
}

pub async fn start() -> Simulator {
    Simulator::start(config(None)).await.expect("simulator starts")
}

/// A client polling and recovering quickly.
pub fn client_as(simulator: &Simulator, user: &str, password: &str) -> SmapiClient {
    let mut config = ClientConfig::new(simulator.address().to_string());
    config.poll_interval = Duration::from_millis(20);
    config.poll_attempts = 500;
    config.recovery_delay = Duration::from_millis(10);
    config.connect_retry_delays = vec![Duration::from_millis(50); 3];
    config.request_timeout = Duration::from_secs(30);
    config.long_request_timeout = Duration::from_secs(30);
    SmapiClient::new(config, Credentials::new(user, password).expect("credentials"))
}

pub fn admin(simulator: &Simulator) -> SmapiClient {
    client_as(simulator, ADMIN, ADMIN_PASSWORD)
}

/// The return and reason code of a failed call.
pub fn codes<T: Debug>(result: Result<T, Error>) -> (i32, i32) {
    match result {
        Err(error) => match error.call_error() {
            Some(call) => (call.return_code, call.reason_code),
            None => panic!("expected a SMAPI return code, got {error:?}"),
        },
        Ok(value) => panic!("expected a failure, got {value:?}"),
    }
}

/// Directory records for a Linux guest with a 10-cylinder boot disk from the LINUX group.
pub fn linux_entry(userid: &str) -> Vec<String> {
    vec![
        format!("USER {userid} LNXPW 1G 4G G"),
        "INCLUDE LNXDFLT".into(),
        "MACHINE ESA 4".into(),
        "CPU 00 BASE".into(),
        "IPL 0100".into(),
        "MDISK 0100 3390 AUTOG 10 LINUX MR".into(),
        "NICDEF 1000 TYPE QDIO DEVICES 3 LAN SYSTEM VSW1".into(),
    ]
}
