//! z/VM hosts in the server: the driver made from a host's stored settings and password, and loading every
//! registered z/VM host at start. Registration itself (with its checks) is `api::hosts::host_create`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use steward_hypervisor::HypervisorError;
use steward_hypervisor::zvm::{ZvmHost, ZvmHostConfig};
use steward_types::api::hosts::{HostKind, ZvmHostSettings};

use crate::app::hosts::{Driver, Hosts};

/// How often a DirMaint operation in progress is polled unless the host's settings say: a poll is one cheap
/// query, and zthin's 15 s makes every disk operation wait needlessly.
const DEFAULT_POLL_INTERVAL_MS: u64 = 2_000;

/// The z/VM driver for a host's settings; every name and setting is checked, nothing is sent yet.
pub fn driver(settings: &ZvmHostSettings, password: &str) -> Result<ZvmHost, HypervisorError> {
    let invalid = |what: &str, reason: String| HypervisorError::InvalidInput { what: what.to_owned(), reason };
    let (host, port) = settings.address.rsplit_once(':').ok_or_else(|| {
        invalid("address", format!("{:?} is not HOST:PORT (SMAPI's usual port is 44444)", settings.address))
    })?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |port| port == 0) {
        return Err(invalid("address", format!("{:?} is not HOST:PORT with a port from 1 to 65535", settings.address)));
    }
    let credentials = smapi::Credentials::new(&settings.user, password)
        .map_err(|error| invalid("user or password", error.to_string()))?;
    let mut config = ZvmHostConfig::new(&settings.address, credentials, &settings.disk_pool);
    config.mac_prefix = settings.mac_prefix.clone();
    config.image_holder_prefix = settings.image_holder_prefix.clone();
    config.profile = settings.profile.clone();
    config.vswitch_real_device = settings.vswitch_real_device.clone();
    let milliseconds = settings.poll_interval_ms.unwrap_or(DEFAULT_POLL_INTERVAL_MS);
    if !(10..=600_000).contains(&milliseconds) {
        return Err(invalid("poll_interval_ms", format!("{milliseconds} is not between 10 and 600000")));
    }
    config.client.poll_interval = Duration::from_millis(milliseconds);
    // The same total time for an operation as zthin's 12 polls of 15 s, and at least 12 polls.
    config.client.poll_attempts = (180_000 / milliseconds).clamp(12, 18_000) as u32;
    if let Some(pem) = &settings.tls_ca_certificate {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let certificate =
                certificate.map_err(|error| invalid("tls_ca_certificate", format!("is not PEM: {error}")))?;
            roots.add(certificate).map_err(|error| invalid("tls_ca_certificate", error.to_string()))?;
        }
        if roots.is_empty() {
            return Err(invalid("tls_ca_certificate", "holds no certificate".to_owned()));
        }
        let name = settings.tls_server_name.clone().unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| invalid("tls_server_name", format!("{name:?} is not a DNS name or IP address")))?;
        let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.client.tls = Some(smapi::TlsSettings { config: Arc::new(tls), server_name });
    } else if settings.tls_server_name.is_some() {
        return Err(invalid("tls_server_name", "needs tls_ca_certificate".to_owned()));
    }
    ZvmHost::new(config)
}

/// Opens the driver of every registered z/VM host. A host whose settings cannot be used is logged and left
/// without a driver (its resources answer "unavailable") rather than stopping the server.
pub async fn load_registered(
    store: &steward_store::Store,
    data_dir: &Path,
    hosts: &Hosts,
) -> steward_store::Result<usize> {
    let mut conn = store.conn().await?;
    let mut loaded = 0;
    for record in steward_store::hosts::list(&mut conn).await? {
        if record.kind != HostKind::Zvm {
            continue;
        }
        let secret = steward_store::hosts::secret(&mut conn, record.id).await?.unwrap_or_default();
        let settings: Result<ZvmHostSettings, String> = record
            .settings
            .as_deref()
            .ok_or_else(|| "no settings stored".to_owned())
            .and_then(|text| serde_json::from_str(text).map_err(|error| error.to_string()));
        match settings
            .map_err(|error| error.to_string())
            .and_then(|settings| driver(&settings, &secret).map_err(|error| error.to_string()))
        {
            Ok(zvm) => {
                hosts.insert(record.id, Driver::new(Arc::new(zvm), storage(data_dir, &record.name)));
                loaded += 1;
            }
            Err(error) => tracing::error!(host = %record.name, %error, "z/VM host left without a driver"),
        }
    }
    Ok(loaded)
}

/// Where the server would keep files for a host; z/VM hosts keep everything on z/VM, so nothing is put there.
pub fn storage(data_dir: &Path, host: &str) -> std::path::PathBuf {
    data_dir.join("hosts").join(host)
}
