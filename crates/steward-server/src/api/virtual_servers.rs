//! Virtual servers: `/api/v1/virtual-servers` and their actions (deploy, start, stop, restart, capture,
//! console, register, delete). Every change runs as an operation (saga); the handler validates everything it
//! can before anything is created, reserves names in its transaction, and answers `202 Accepted`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use steward_hypervisor::{Boot, ConfigDrive, DiskAttachment, GuestSpec, GuestState, Nic, NicAddressing, NicConfig};
use steward_store::virtual_servers::{VirtualServerRecord, VirtualServerState};
use steward_types::api::hosts::HostKind;
use steward_types::api::os_templates::{
    BootMethod, DiskFormat, OsTemplate, OsTemplateOrigin, Personalization, VirtualServerCapture,
};
use steward_types::api::virtual_servers::{
    CloneMethod, ConsoleLog, DiskOrigin, PowerState, VirtualServer, VirtualServerCreate, VirtualServerDeploy,
    VirtualServerDisk, VirtualServerNic, VirtualServerRegister, VirtualServerStop,
};
use steward_types::api::{Page, PageQuery, Role, Timestamp};
use steward_types::{ErrorResponse, OperationId, OsTemplateId, SystemId, VirtualServerId, validate};

use crate::api::extract::{self, Path, Query};
use crate::api::hosts::find_host;
use crate::api::networks::find_network;
use crate::api::operations::{Accepted, OperationStart, operation_accepted, operation_record};
use crate::api::os_templates::{find_os_template, readable_file};
use crate::api::server_templates::find_server_template;
use crate::app::hosts::{
    DEFAULT_STOP_TIMEOUT_SECONDS, Driver, TemplateFiles, arch_from_driver, arch_to_driver, driver_format, fresh_mac,
    power_state,
};
use crate::app::sagas::{self, PowerAction};
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The longest a stop may wait for the guest before powering it off.
const MAX_STOP_TIMEOUT_SECONDS: u64 = 3600;
const MAX_SCRIPTS: usize = 16;
const MAX_SCRIPT_BYTES: usize = 64 * 1024;
/// At most this much of the console log is returned.
const MAX_CONSOLE_BYTES: usize = 1 << 20;

pub async fn find_virtual_server(conn: &mut steward_store::Conn, id_or_name: &str) -> ApiResult<VirtualServerRecord> {
    steward_store::virtual_servers::get(conn, id_or_name)
        .await?
        .ok_or_else(|| ApiError::not_found("virtual server", id_or_name))
}

/// The stored virtual server with its live power state.
async fn view(driver: &Driver, mut server: VirtualServer) -> VirtualServer {
    server.power = power_state(driver, &server.name).await;
    server
}

fn require_ready(record: &VirtualServerRecord) -> ApiResult<()> {
    match record.state {
        VirtualServerState::Ready => Ok(()),
        VirtualServerState::Creating => Err(ApiError::conflict(format!(
            "virtual server {:?} is still being created; wait for its operation",
            record.server.name
        ))),
        VirtualServerState::Deleting => {
            Err(ApiError::conflict(format!("virtual server {:?} is being deleted", record.server.name)))
        }
    }
}

async fn require_stopped(driver: &Driver, server: &VirtualServer, action: &str) -> ApiResult<()> {
    match driver.status(&server.name).await {
        Ok(GuestState::Stopped) => Ok(()),
        Ok(GuestState::Running { .. }) => Err(ApiError::conflict(format!(
            "virtual server {:?} is running; stop it before you {action} it (steward virtual-servers stop {})",
            server.name, server.name
        ))),
        Err(error) => Err(error.into()),
    }
}

#[utoipa::path(get, path = "/api/v1/virtual-servers", tag = "virtual-servers", params(PageQuery),
    responses((status = 200, body = Page<VirtualServer>)))]
pub async fn virtual_server_list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<VirtualServer>>> {
    let mut conn = state.store.conn().await?;
    let (records, next) =
        steward_store::virtual_servers::list(&mut conn, page.after.as_deref(), steward_store::page_limit(page.limit))
            .await?;
    drop(conn);
    let mut items = Vec::with_capacity(records.len());
    for record in records {
        match state.hosts.driver(record.host) {
            Ok(driver) => items.push(view(&driver, record.server).await),
            Err(_) => items.push(record.server),
        }
    }
    Ok(Json(Page { items, next }))
}

#[utoipa::path(get, path = "/api/v1/virtual-servers/{virtual_server}", tag = "virtual-servers",
    params(("virtual_server" = String, Path, description = "Name or ID")),
    responses((status = 200, body = VirtualServer), (status = 404, body = ErrorResponse)))]
pub async fn virtual_server_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<VirtualServer>> {
    let mut conn = state.store.conn().await?;
    let record = find_virtual_server(&mut conn, &name).await?;
    drop(conn);
    Ok(Json(match state.hosts.driver(record.host) {
        Ok(driver) => view(&driver, record.server).await,
        Err(_) => record.server,
    }))
}

#[utoipa::path(post, path = "/api/v1/virtual-servers", tag = "virtual-servers", request_body = VirtualServerCreate,
    responses((status = 202, body = steward_types::api::operations::OperationAccepted), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn virtual_server_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<VirtualServerCreate>,
) -> ApiResult<Accepted> {
    let entry = AuditEntry::new(&caller.user.name, "virtual_server.create", &body.name)
        .details(serde_json::json!({ "host": body.host, "server_template": body.server_template }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let (host, driver) = find_host(&state, &mut tx, &body.host).await?;
        driver.check_guest_name("name", &body.name)?;
        let template = find_server_template(&mut tx, &body.server_template).await?;
        let facts = driver.probe().await?;
        if facts.emulator(arch_to_driver(template.arch)).is_none() && host.kind == HostKind::Zvm {
            return Err(ApiError::validation(
                "server_template",
                format!("host {} is a z/VM system: it runs s390x guests, not {}", host.name, template.arch),
            ));
        }
        if facts.emulator(arch_to_driver(template.arch)).is_none() {
            let package = if template.arch == steward_types::api::hosts::Arch::S390x {
                "qemu-system-misc"
            } else {
                "qemu-system-x86"
            };
            return Err(ApiError::validation(
                "server_template",
                format!(
                    "host {} cannot run {} guests: qemu-system-{} is not installed (apt-get install {package})",
                    host.name, template.arch, template.arch
                ),
            ));
        }
        if template.memory_mib << 20 > facts.memory_total_bytes {
            return Err(ApiError::validation(
                "server_template",
                format!(
                    "its {} MiB of memory exceed host {}'s {} MiB",
                    template.memory_mib,
                    host.name,
                    facts.memory_total_bytes >> 20
                ),
            ));
        }
        if steward_store::virtual_servers::get(&mut tx, &body.name).await?.is_some() {
            return Err(ApiError::conflict(format!("virtual server {:?} already exists", body.name)));
        }
        if steward_store::systems::name_taken(&mut tx, &body.name).await? {
            return Err(ApiError::conflict(format!(
                "a managed system is already named {:?}; the virtual server's agent would register under that name",
                body.name
            )));
        }
        let id = VirtualServerId::new();
        let system = SystemId::new();
        let mut nics = Vec::new();
        let mut views = Vec::new();
        for (position, network_name) in template.nics.iter().enumerate() {
            let network = find_network(&mut tx, network_name).await?;
            if network.host != host.name {
                return Err(ApiError::validation(
                    "server_template",
                    format!("its network {:?} is on host {}, not {}", network.name, network.host, host.name),
                ));
            }
            let mac = fresh_mac(&mut tx, &driver).await?;
            let tap = driver.nic_device(id, position);
            nics.push((network.id, Nic { network: network.name.clone(), tap, mac: mac.clone() }));
            views.push(VirtualServerNic { network: network.name, mac, address: None });
        }
        let params = sagas::virtual_server_create::Params {
            virtual_server: id,
            name: body.name.clone(),
            host: host.id,
            system,
            arch: arch_to_driver(template.arch),
            cpus: template.cpus,
            memory_mib: template.memory_mib,
            cpu_share: template.cpu_share,
            disks: template.disks.clone(),
            nics: nics.iter().map(|(_, nic)| nic.clone()).collect(),
        };
        let needed: u64 = template.disks.iter().sum();
        if needed > facts.storage_free_bytes {
            // qcow2 disks grow as they are written; refuse only what could never fit.
            return Err(ApiError::validation(
                "server_template",
                format!(
                    "its disks total {} MiB, host {} has {} MiB free",
                    needed >> 20,
                    host.name,
                    facts.storage_free_bytes >> 20
                ),
            ));
        }
        let server = VirtualServer {
            id,
            name: body.name.clone(),
            host: host.name.clone(),
            server_template: Some(template.name.clone()),
            arch: template.arch,
            cpus: template.cpus,
            memory_mib: template.memory_mib,
            cpu_share: template.cpu_share,
            disks: template
                .disks
                .iter()
                .enumerate()
                .map(|(index, size)| VirtualServerDisk {
                    size_bytes: *size,
                    origin: DiskOrigin::Blank,
                    path: driver.disk_path(&body.name, index).display().to_string(),
                })
                .collect(),
            nics: views,
            os_template: None,
            hostname: None,
            power: PowerState::Stopped,
            system: Some(system),
            registered: false,
            created_at: Timestamp::now(),
        };
        steward_store::virtual_servers::insert(
            &mut tx,
            &server,
            host.id,
            Some(template.id),
            VirtualServerState::Creating,
        )
        .await?;
        for (position, (network, nic)) in nics.iter().enumerate() {
            steward_store::virtual_servers::nic_insert(&mut tx, id, position as u32, *network, &nic.mac, None).await?;
        }
        let (kind, steps) = (sagas::virtual_server_create::KIND, sagas::virtual_server_create::STEPS);
        record_on(&mut tx, &caller, OperationId::new(), &server, kind, steps, &params).await
    }
    .await;
    let operation = finish(&state, tx, entry, result).await?;
    operation_accepted(&state, operation).await
}

/// Parses one NIC's settings into what the config drive carries; checks them against the network's subnet.
fn nic_addressing(
    index: usize,
    settings: &steward_types::api::virtual_servers::NicSettings,
    subnet: Option<&str>,
) -> ApiResult<NicAddressing> {
    let field = |name: &str| format!("nics[{index}].{name}");
    let Some(address) = &settings.address else {
        if settings.gateway.is_some() || !settings.dns.is_empty() {
            return Err(ApiError::validation(&field("address"), "a gateway or DNS server needs a static address"));
        }
        return Ok(NicAddressing::Dhcp);
    };
    let (address, prefix) = validate::cidr(&field("address"), address)?;
    let subnet = subnet.map(|subnet| validate::cidr("subnet", subnet)).transpose()?;
    if let Some((network, network_prefix)) = subnet
        && (!validate::in_subnet(address, network, network_prefix) || prefix != network_prefix)
    {
        return Err(ApiError::validation(
            &field("address"),
            format!("{address}/{prefix} is not an address of the network's subnet {network}/{network_prefix}"),
        ));
    }
    let gateway =
        settings.gateway.as_deref().map(|gateway| validate::ip_address(&field("gateway"), gateway)).transpose()?;
    if let Some(gateway) = gateway
        && (!validate::in_subnet(gateway, address, prefix) || gateway == address)
    {
        return Err(ApiError::validation(
            &field("gateway"),
            format!("{gateway} is not another address of {address}/{prefix}'s subnet"),
        ));
    }
    let dns = settings
        .dns
        .iter()
        .enumerate()
        .map(|(position, server)| validate::ip_address(&format!("nics[{index}].dns[{position}]"), server))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NicAddressing::Static { address, prefix, gateway, dns })
}

#[utoipa::path(post, path = "/api/v1/virtual-servers/{virtual_server}/deploy", tag = "virtual-servers",
    params(("virtual_server" = String, Path, description = "Name or ID")), request_body = VirtualServerDeploy,
    responses((status = 202, body = steward_types::api::operations::OperationAccepted), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn virtual_server_deploy(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    extract::Json(body): extract::Json<VirtualServerDeploy>,
) -> ApiResult<Accepted> {
    let entry = AuditEntry::new(&caller.user.name, "virtual_server.deploy", &name).details(serde_json::json!({
        "os_template": body.os_template, "hostname": body.hostname, "nics": body.nics,
        "scripts": body.scripts.iter().map(|script| &script.name).collect::<Vec<_>>(), "clone": body.clone, "start": body.start,
    }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let record = find_virtual_server(&mut tx, &name).await?;
        require_ready(&record)?;
        let before = record.server.clone();
        let template = find_os_template(&mut tx, &body.os_template).await?;
        validate::hostname("hostname", &body.hostname)?;
        if template.arch != before.arch {
            return Err(ApiError::validation(
                "os_template",
                format!("{:?} is an {} template; virtual server {:?} is {}", template.name, template.arch, before.name, before.arch),
            ));
        }
        if template.host != before.host {
            return Err(ApiError::validation(
                "os_template",
                format!("{:?} is on host {}; virtual server {:?} is on {}", template.name, template.host, before.name, before.host),
            ));
        }
        if body.nics.len() > before.nics.len() {
            return Err(ApiError::validation(
                "nics",
                format!("settings for {} NIC(s) given; virtual server {:?} has {}", body.nics.len(), before.name, before.nics.len()),
            ));
        }
        if body.scripts.len() > MAX_SCRIPTS {
            return Err(ApiError::validation("scripts", format!("at most {MAX_SCRIPTS} scripts")));
        }
        for (index, script) in body.scripts.iter().enumerate() {
            validate::name(&format!("scripts[{index}].name"), &script.name)?;
            if body.scripts[..index].iter().any(|earlier| earlier.name == script.name) {
                return Err(ApiError::validation(
                    &format!("scripts[{index}].name"),
                    format!("{:?} is used twice: each script's result is recorded under its name", script.name),
                ));
            }
            if script.body.len() > MAX_SCRIPT_BYTES {
                return Err(ApiError::validation(&format!("scripts[{index}].body"), "must be at most 64 KiB"));
            }
        }
        if template.personalization == Personalization::None && (!body.nics.is_empty() || !body.scripts.is_empty()) {
            return Err(ApiError::validation(
                "os_template",
                format!("{:?} is not personalized (no config drive); deploy it without network settings or scripts", template.name),
            ));
        }
        let mut addressing = Vec::new();
        let mut nic_views = before.nics.clone();
        for (index, nic) in before.nics.iter().enumerate() {
            let config = match body.nics.get(index) {
                Some(settings) => {
                    let network = find_network(&mut tx, &nic.network).await?;
                    nic_addressing(index, settings, network.subnet.as_deref())?
                }
                None => NicAddressing::None,
            };
            nic_views[index].address = match &config {
                NicAddressing::Static { address, prefix, .. } => Some(format!("{address}/{prefix}")),
                _ => None,
            };
            addressing.push(NicConfig { mac: nic.mac.clone(), config });
        }
        let Some(boot_disk) = before.disks.first() else {
            return Err(ApiError::validation("virtual_server", "it has no disk to deploy into"));
        };
        let (_, driver) = find_host(&state, &mut tx, &before.host).await?;
        // A z/VM copy (DirMaint DATAMOVE) takes the image's size whatever the first disk had.
        let copies_keep_image_size = driver.capabilities().disk_naming == steward_hypervisor::DiskNaming::Minidisks;
        if boot_disk.size_bytes < template.disk_size_bytes && !copies_keep_image_size {
            return Err(ApiError::validation(
                "os_template",
                format!(
                    "its image needs a {} MiB disk; virtual server {:?}'s first disk has {} MiB (use a server template with a larger first disk)",
                    template.disk_size_bytes.div_ceil(1 << 20), before.name, boot_disk.size_bytes >> 20
                ),
            ));
        }
        let boot_disk_bytes = if copies_keep_image_size { template.disk_size_bytes } else { boot_disk.size_bytes };
        require_stopped(&driver, &before, "deploy into").await?;
        let capabilities = driver.capabilities();
        let overlay = match body.clone.unwrap_or(CloneMethod::Auto) {
            CloneMethod::Auto => template.disk_format == DiskFormat::Qcow2 && capabilities.copy_on_write,
            CloneMethod::Overlay if !capabilities.copy_on_write => {
                return Err(ApiError::validation(
                    "clone",
                    format!("host {} has no copy-on-write disks (z/VM minidisks): use copy or auto", before.host),
                ));
            }
            CloneMethod::Overlay => true,
            CloneMethod::Copy => false,
        };
        if !capabilities.config_drive && (!body.nics.is_empty() || !body.scripts.is_empty()) {
            return Err(ApiError::validation(
                if body.nics.is_empty() { "scripts" } else { "nics" },
                format!(
                    "host {} has no config drive to carry network settings and scripts; on z/VM they reach the guest \
                     through its agent, whose IUCV channel Steward does not have yet (docs/zvm.md)",
                    before.host
                ),
            ));
        }
        let operation = OperationId::new();
        let suffix = &operation.0.simple().to_string()[..8];
        let guest_directory = driver.guest_directory(&before.name);
        let current_disks: Vec<String> = before.disks.iter().map(|disk| disk.path.clone()).collect();
        let new_disk = driver.replacement_boot_disk(&before.name, &current_disks, suffix);
        let files = TemplateFiles::new(&driver, &template);
        let boot = match template.boot {
            BootMethod::Direct => Boot::Direct {
                kernel: files.kernel.clone(),
                initrd: template.has_initrd.then(|| files.initrd.clone()),
                cmdline: template.cmdline.clone().unwrap_or_default(),
            },
            BootMethod::Firmware => Boot::Firmware { firmware: None },
        };
        let config_drive = (template.personalization == Personalization::Nocloud && capabilities.config_drive).then(|| {
            (
                guest_directory.join(format!("cidata-{suffix}.img")),
                ConfigDrive {
                    instance_id: operation.to_string(),
                    hostname: body.hostname.clone(),
                    nics: addressing,
                    scripts: body
                        .scripts
                        .iter()
                        .map(|script| steward_hypervisor::PersonalizationScript {
                            name: script.name.clone(),
                            body: script.body.clone(),
                        })
                        .collect(),
                    environment: Default::default(),
                },
            )
        });
        let mut after = before.clone();
        after.os_template = Some(template.name.clone());
        after.hostname = Some(body.hostname.clone());
        after.nics = nic_views;
        after.disks[0] = VirtualServerDisk {
            size_bytes: boot_disk_bytes,
            origin: if overlay { DiskOrigin::Overlay } else { DiskOrigin::Copy },
            path: new_disk.display().to_string(),
        };
        let params = sagas::virtual_server_deploy::Params {
            virtual_server: before.id,
            name: before.name.clone(),
            host: record.host,
            os_template: template.id,
            image: files.disk.clone(),
            image_format: driver_format(template.disk_format),
            overlay,
            disk_size_bytes: boot_disk_bytes,
            new_disk,
            config_drive,
            boot,
            start: body.start,
            before_os_template: current_os_template(&mut tx, &before).await?,
            before,
            after,
            previous_spec: None,
        };
        record_on(&mut tx, &caller, operation, &params.after, sagas::virtual_server_deploy::KIND, sagas::virtual_server_deploy::STEPS, &params)
            .await
    }
    .await;
    let operation = finish(&state, tx, entry, result).await?;
    operation_accepted(&state, operation).await
}

/// Registers a guest whose definition the host keeps (a z/VM directory entry): the entry is adopted as it is
/// (its disks, CPUs, memory and NICs read from it), and the virtual server is named after it.
async fn register_definition(
    tx: &mut steward_store::Conn,
    caller: &Caller,
    body: &VirtualServerRegister,
    host: &steward_store::hosts::HostRecord,
    driver: &Driver,
) -> ApiResult<OperationId> {
    let guest = body.guest.clone().unwrap_or_else(|| body.name.clone());
    if !guest.eq_ignore_ascii_case(&body.name) {
        return Err(ApiError::validation(
            "name",
            format!("on z/VM a virtual server is named after its user ID: use {:?}", guest.to_ascii_lowercase()),
        ));
    }
    for (field, given) in [
        ("disk", body.disk.is_some()),
        ("arch", body.arch.is_some()),
        ("cpus", body.cpus.is_some()),
        ("memory_mib", body.memory_mib.is_some()),
        ("kernel", body.kernel.is_some()),
        ("initrd", body.initrd.is_some()),
        ("cmdline", body.cmdline.is_some()),
    ] {
        if given {
            return Err(ApiError::validation(
                field,
                format!("host {} reads it from the guest's directory entry; leave it out", host.name),
            ));
        }
    }
    driver.check_guest_name("guest", &guest)?;
    let description = match driver.describe_guest(&body.name).await {
        Ok(description) => description,
        Err(steward_hypervisor::HypervisorError::NotFound { .. }) => {
            return Err(ApiError::validation(
                "guest",
                format!("host {} has no directory entry {:?} (steward hosts guests {})", host.name, guest, host.name),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    let mut spec = description.spec;
    spec.name = body.name.clone();
    let mut disks = Vec::new();
    for disk in &spec.disks {
        let info = driver.disk_info(&disk.path).await?;
        disks.push(VirtualServerDisk {
            size_bytes: info.virtual_size_bytes,
            origin: DiskOrigin::Registered,
            path: disk.path.display().to_string(),
        });
    }
    if disks.is_empty() {
        return Err(ApiError::validation("guest", format!("{guest:?} has no minidisk to boot from")));
    }
    let id = VirtualServerId::new();
    let system = SystemId::new();
    let server = VirtualServer {
        id,
        name: body.name.clone(),
        host: host.name.clone(),
        server_template: None,
        arch: arch_from_driver(spec.arch),
        cpus: spec.cpus,
        memory_mib: spec.memory_mib,
        cpu_share: spec.cpu_share,
        disks,
        // The entry's NICs stay as they are; they are on virtual switches Steward may not know as networks.
        nics: Vec::new(),
        os_template: None,
        hostname: None,
        power: power_state(driver, &body.name).await,
        system: Some(system),
        registered: true,
        created_at: Timestamp::now(),
    };
    steward_store::virtual_servers::insert(tx, &server, host.id, None, VirtualServerState::Creating).await?;
    let params = sagas::virtual_server_register::Params {
        virtual_server: id,
        host: host.id,
        system,
        spec,
        pid: None,
        adopt_definition: true,
    };
    let (kind, steps) = (sagas::virtual_server_register::KIND, sagas::virtual_server_register::STEPS);
    record_on(tx, caller, OperationId::new(), &server, kind, steps, &params).await
}

/// Where a new template's image goes on a host that names template disks itself (z/VM): the first location no
/// template of the host has. `None` on hosts where templates are files of the server.
async fn image_location(
    conn: &mut steward_store::Conn,
    driver: &Driver,
    host: steward_types::HostId,
) -> ApiResult<Option<std::path::PathBuf>> {
    if driver.image_location(0).is_none() {
        return Ok(None);
    }
    let taken = steward_store::templates::os_template_locations(conn, host).await?;
    for index in 0..=u16::MAX as u32 {
        match driver.image_location(index) {
            Some(location) if !taken.contains(&location.display().to_string()) => return Ok(Some(location)),
            Some(_) => continue,
            None => break,
        }
    }
    Err(ApiError::conflict("every image holder location of this host is taken; delete OS templates first"))
}

async fn current_os_template(
    conn: &mut steward_store::Conn,
    server: &VirtualServer,
) -> ApiResult<Option<OsTemplateId>> {
    Ok(match &server.os_template {
        Some(name) => steward_store::templates::os_template_get(conn, name).await?.map(|(template, _)| template.id),
        None => None,
    })
}

/// Records an operation acting on a virtual server (`id` is chosen beforehand when files are named after it).
async fn record_on<P: Serialize>(
    tx: &mut steward_store::Conn,
    caller: &Caller,
    id: OperationId,
    server: &VirtualServer,
    kind: &str,
    steps: &[&str],
    params: &P,
) -> ApiResult<OperationId> {
    operation_record(
        tx,
        caller,
        OperationStart {
            id,
            kind,
            steps,
            target_kind: "virtual_server",
            target_id: server.id.to_string(),
            target_name: &server.name,
            params,
            parent: None,
        },
    )
    .await
}

async fn power(
    state: AppState,
    caller: Caller,
    name: String,
    action: PowerAction,
    stop: VirtualServerStop,
) -> ApiResult<Accepted> {
    let audit_action = match action {
        PowerAction::Start => "virtual_server.start",
        PowerAction::Stop => "virtual_server.stop",
        PowerAction::Restart => "virtual_server.restart",
    };
    let entry = AuditEntry::new(&caller.user.name, audit_action, &name)
        .details(serde_json::json!({ "timeout_seconds": stop.timeout_seconds, "force": stop.force }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let record = find_virtual_server(&mut tx, &name).await?;
        require_ready(&record)?;
        let timeout = stop.timeout_seconds.unwrap_or(DEFAULT_STOP_TIMEOUT_SECONDS);
        if timeout > MAX_STOP_TIMEOUT_SECONDS {
            return Err(ApiError::validation("timeout_seconds", format!("must be at most {MAX_STOP_TIMEOUT_SECONDS}")));
        }
        let (_, driver) = find_host(&state, &mut tx, &record.server.host).await?;
        if action == PowerAction::Start {
            let facts = driver.probe().await?;
            if facts.emulator(arch_to_driver(record.server.arch)).is_none() {
                return Err(ApiError::conflict(format!(
                    "host {} has no qemu-system-{} any more; install it to start {:?}",
                    record.server.host, record.server.arch, record.server.name
                )));
            }
        }
        let params = sagas::virtual_server_power::Params {
            host: record.host,
            server: record.server.clone(),
            action,
            stop_timeout_seconds: (!stop.force).then_some(timeout),
        };
        record_on(
            &mut tx,
            &caller,
            OperationId::new(),
            &record.server,
            sagas::virtual_server_power::KIND,
            action.steps(),
            &params,
        )
        .await
    }
    .await;
    let operation = finish(&state, tx, entry, result).await?;
    operation_accepted(&state, operation).await
}

#[utoipa::path(post, path = "/api/v1/virtual-servers/{virtual_server}/start", tag = "virtual-servers",
    params(("virtual_server" = String, Path, description = "Name or ID")),
    responses((status = 202, body = steward_types::api::operations::OperationAccepted), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn virtual_server_start(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Accepted> {
    power(state, caller, name, PowerAction::Start, VirtualServerStop { timeout_seconds: None, force: false }).await
}

#[utoipa::path(post, path = "/api/v1/virtual-servers/{virtual_server}/stop", tag = "virtual-servers",
    params(("virtual_server" = String, Path, description = "Name or ID")), request_body = VirtualServerStop,
    responses((status = 202, body = steward_types::api::operations::OperationAccepted), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn virtual_server_stop(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Accepted> {
    // The body is optional: no body means the defaults.
    let stop = if body.iter().all(u8::is_ascii_whitespace) {
        VirtualServerStop { timeout_seconds: None, force: false }
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::bad_request(format!("the request body is not valid: {error}")))?
    };
    power(state, caller, name, PowerAction::Stop, stop).await
}

#[utoipa::path(post, path = "/api/v1/virtual-servers/{virtual_server}/restart", tag = "virtual-servers",
    params(("virtual_server" = String, Path, description = "Name or ID")),
    responses((status = 202, body = steward_types::api::operations::OperationAccepted), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn virtual_server_restart(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Accepted> {
    power(state, caller, name, PowerAction::Restart, VirtualServerStop { timeout_seconds: None, force: false }).await
}

#[utoipa::path(delete, path = "/api/v1/virtual-servers/{virtual_server}", tag = "virtual-servers",
    params(("virtual_server" = String, Path, description = "Name or ID")),
    responses((status = 202, body = steward_types::api::operations::OperationAccepted), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn virtual_server_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Accepted> {
    let entry = AuditEntry::new(&caller.user.name, "virtual_server.delete", &name);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let record = find_virtual_server(&mut tx, &name).await?;
        // A virtual server left `creating` by a failed create is removed by that operation's undo, not here.
        if record.state == VirtualServerState::Creating {
            return Err(ApiError::conflict(format!("virtual server {:?} is still being created", record.server.name)));
        }
        let (_, driver) = find_host(&state, &mut tx, &record.server.host).await?;
        let spec = driver.spec(&record.server.name).await.ok();
        let taps = spec.map(|spec| spec.nics.into_iter().map(|nic| nic.tap).collect()).unwrap_or_default();
        let params = sagas::virtual_server_delete::Params {
            host: record.host,
            server: record.server.clone(),
            taps,
            was_running: None,
        };
        record_on(
            &mut tx,
            &caller,
            OperationId::new(),
            &record.server,
            sagas::virtual_server_delete::KIND,
            sagas::virtual_server_delete::STEPS,
            &params,
        )
        .await
    }
    .await;
    let operation = finish(&state, tx, entry, result).await?;
    operation_accepted(&state, operation).await
}

#[utoipa::path(post, path = "/api/v1/virtual-servers/{virtual_server}/capture", tag = "virtual-servers",
    params(("virtual_server" = String, Path, description = "Name or ID")), request_body = VirtualServerCapture,
    responses((status = 202, body = steward_types::api::operations::OperationAccepted), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn virtual_server_capture(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    extract::Json(body): extract::Json<VirtualServerCapture>,
) -> ApiResult<Accepted> {
    let entry = AuditEntry::new(&caller.user.name, "virtual_server.capture", &name)
        .details(serde_json::json!({ "os_template": body.name }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let description = body.description.clone().unwrap_or_default();
        validate::description("description", &description)?;
        let record = find_virtual_server(&mut tx, &name).await?;
        require_ready(&record)?;
        let server = &record.server;
        if server.os_template.is_none() && !server.registered {
            return Err(ApiError::validation(
                "virtual_server",
                format!("{:?} has no operating system yet; deploy an OS template into it first", server.name),
            ));
        }
        if steward_store::templates::os_template_get(&mut tx, &body.name).await?.is_some() {
            return Err(ApiError::conflict(format!("OS template {:?} already exists", body.name)));
        }
        let (host, driver) = find_host(&state, &mut tx, &server.host).await?;
        require_stopped(&driver, server, "capture").await?;
        let spec = driver.spec(&server.name).await?;
        let Some(disk) = spec.disks.first() else {
            return Err(ApiError::validation("virtual_server", "it has no disk to capture"));
        };
        let source = match &server.os_template {
            Some(template) => {
                steward_store::templates::os_template_get(&mut tx, template).await?.map(|(template, _)| template)
            }
            None => None,
        };
        let (boot, cmdline, kernel, initrd) = match &spec.boot {
            Boot::Direct { kernel, initrd, cmdline } => {
                (BootMethod::Direct, Some(cmdline.clone()), Some(kernel.clone()), initrd.clone())
            }
            Boot::Firmware { .. } => (BootMethod::Firmware, None, None, None),
        };
        let disk_location = image_location(&mut tx, &driver, host.id).await?;
        let template = OsTemplate {
            id: OsTemplateId::new(),
            name: body.name.clone(),
            description,
            host: host.name.clone(),
            arch: server.arch,
            boot,
            cmdline,
            has_kernel: kernel.is_some(),
            has_initrd: initrd.is_some(),
            disk_format: if disk_location.is_some() { DiskFormat::Raw } else { DiskFormat::Qcow2 },
            disk_size_bytes: 0,
            file_size_bytes: 0,
            sha256: String::new(),
            personalization: source.as_ref().map(|source| source.personalization).unwrap_or(Personalization::None),
            agent: body.agent.unwrap_or_else(|| source.as_ref().is_some_and(|source| source.agent)),
            origin: OsTemplateOrigin::Captured,
            source_virtual_server: Some(server.name.clone()),
            source_file: None,
            sealed: Vec::new(),
            disk_location: disk_location.map(|location| location.display().to_string()),
            created_at: Timestamp::now(),
        };
        steward_store::templates::os_template_insert(
            &mut tx,
            &template,
            host.id,
            steward_store::templates::OsTemplateState::Creating,
        )
        .await?;
        let params = sagas::virtual_server_capture::Params {
            host: host.id,
            template,
            source_disk: disk.path.clone(),
            kernel,
            initrd,
        };
        record_on(
            &mut tx,
            &caller,
            OperationId::new(),
            server,
            sagas::virtual_server_capture::KIND,
            sagas::virtual_server_capture::STEPS,
            &params,
        )
        .await
    }
    .await;
    let operation = finish(&state, tx, entry, result).await?;
    operation_accepted(&state, operation).await
}

#[utoipa::path(post, path = "/api/v1/virtual-servers/register", tag = "virtual-servers", request_body = VirtualServerRegister,
    responses((status = 202, body = steward_types::api::operations::OperationAccepted), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn virtual_server_register(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<VirtualServerRegister>,
) -> ApiResult<Accepted> {
    let entry = AuditEntry::new(&caller.user.name, "virtual_server.register", &body.name).details(serde_json::json!({
        "host": body.host, "guest": body.guest, "disk": body.disk, "arch": body.arch, "kernel": body.kernel,
    }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let (host, driver) = find_host(&state, &mut tx, &body.host).await?;
        if steward_store::virtual_servers::get(&mut tx, &body.name).await?.is_some() {
            return Err(ApiError::conflict(format!("virtual server {:?} already exists", body.name)));
        }
        if steward_store::systems::name_taken(&mut tx, &body.name).await? {
            return Err(ApiError::conflict(format!("a managed system is already named {:?}", body.name)));
        }
        if driver.capabilities().definition_adoption {
            return register_definition(&mut tx, &caller, &body, &host, &driver).await;
        }
        let running: Option<steward_hypervisor::GuestListing> = match &body.guest {
            Some(guest) => {
                let listings = driver.list_guests().await?;
                let found = listings
                    .into_iter()
                    .find(|listing| {
                        listing.name.as_deref() == Some(guest.as_str()) || listing.pid.to_string() == *guest
                    })
                    .ok_or_else(|| {
                        ApiError::validation(
                            "guest",
                            format!(
                                "host {} runs no guest named or with process ID {guest:?} (steward hosts guests {})",
                                host.name, host.name
                            ),
                        )
                    })?;
                if found.managed {
                    return Err(ApiError::conflict(format!("guest {guest:?} is already managed by Steward")));
                }
                Some(found)
            }
            None => None,
        };
        let disk = match (&body.disk, running.as_ref().and_then(|listing| listing.disks.first())) {
            (Some(disk), _) => readable_file("disk", disk)?,
            (None, Some(disk)) => disk.clone(),
            (None, None) => {
                return Err(ApiError::validation(
                    "disk",
                    "name the guest's disk image, or a running guest that has one",
                ));
            }
        };
        let arch = body
            .arch
            .or_else(|| running.as_ref().and_then(|listing| listing.arch).map(arch_from_driver))
            .ok_or_else(|| ApiError::validation("arch", "is required when it cannot be read from a running guest"))?;
        let cpus = body.cpus.or_else(|| running.as_ref().and_then(|listing| listing.cpus)).unwrap_or(1);
        let memory_mib =
            body.memory_mib.or_else(|| running.as_ref().and_then(|listing| listing.memory_mib)).ok_or_else(|| {
                ApiError::validation("memory_mib", "is required when it cannot be read from a running guest")
            })?;
        if cpus == 0 || cpus > crate::api::server_templates::MAX_CPUS {
            return Err(ApiError::validation("cpus", "must be between 1 and 64"));
        }
        if memory_mib < crate::api::server_templates::MIN_MEMORY_MIB {
            return Err(ApiError::validation("memory_mib", "must be at least 64"));
        }
        let boot = match &body.kernel {
            Some(kernel) => Boot::Direct {
                kernel: readable_file("kernel", kernel)?,
                initrd: body.initrd.as_deref().map(|initrd| readable_file("initrd", initrd)).transpose()?,
                cmdline: body.cmdline.clone().unwrap_or_default(),
            },
            None => Boot::Firmware { firmware: None },
        };
        let info =
            driver.disk_info(&disk).await.map_err(|error| ApiError::validation("disk", crate::error_chain(&error)))?;
        let format = if info.format == "qcow2" {
            steward_hypervisor::DiskFormat::Qcow2
        } else {
            steward_hypervisor::DiskFormat::Raw
        };
        let id = VirtualServerId::new();
        let system = SystemId::new();
        let spec = GuestSpec {
            name: body.name.clone(),
            arch: arch_to_driver(arch),
            cpus,
            memory_mib,
            cpu_share: steward_types::api::server_templates::DEFAULT_CPU_SHARE,
            disks: vec![DiskAttachment { path: disk.clone(), format, serial: None }],
            config_drive: None,
            nics: Vec::new(),
            boot,
            agent_channel: true,
        };
        let server = VirtualServer {
            id,
            name: body.name.clone(),
            host: host.name.clone(),
            server_template: None,
            arch,
            cpus,
            memory_mib,
            cpu_share: spec.cpu_share,
            disks: vec![VirtualServerDisk {
                size_bytes: info.virtual_size_bytes,
                origin: DiskOrigin::Registered,
                path: disk.display().to_string(),
            }],
            nics: Vec::new(),
            os_template: None,
            hostname: None,
            power: if running.is_some() { PowerState::Running } else { PowerState::Stopped },
            system: Some(system),
            registered: true,
            created_at: Timestamp::now(),
        };
        steward_store::virtual_servers::insert(&mut tx, &server, host.id, None, VirtualServerState::Creating).await?;
        let params = sagas::virtual_server_register::Params {
            virtual_server: id,
            host: host.id,
            system,
            spec,
            pid: running.map(|listing| listing.pid),
            adopt_definition: false,
        };
        record_on(
            &mut tx,
            &caller,
            OperationId::new(),
            &server,
            sagas::virtual_server_register::KIND,
            sagas::virtual_server_register::STEPS,
            &params,
        )
        .await
    }
    .await;
    let operation = finish(&state, tx, entry, result).await?;
    operation_accepted(&state, operation).await
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// At most this many bytes from the end of the log (default 64 KiB, at most 1 MiB).
    pub bytes: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/virtual-servers/{virtual_server}/console", tag = "virtual-servers",
    params(("virtual_server" = String, Path, description = "Name or ID"), ConsoleQuery),
    responses((status = 200, body = ConsoleLog), (status = 404, body = ErrorResponse)))]
pub async fn virtual_server_console(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<ConsoleQuery>,
) -> ApiResult<Json<ConsoleLog>> {
    let mut conn = state.store.conn().await?;
    let record = find_virtual_server(&mut conn, &name).await?;
    let (_, driver) = find_host(&state, &mut conn, &record.server.host).await?;
    drop(conn);
    let bytes = query.bytes.unwrap_or(64 * 1024).min(MAX_CONSOLE_BYTES);
    let text = driver.console_log(&record.server.name, bytes).await?;
    Ok(Json(ConsoleLog { text }))
}
