//! The REST API under `/api/v1`: the router, the OpenAPI document, and one module per resource.
//!
//! **API boundary:** paths, bodies and error codes here are the external contract (PRODUCT.md). The OpenAPI
//! document is generated from these handlers and committed as `openapi.json`; a test fails when it is stale.
//!
//! Handlers are thin: they authorize the caller, validate input, call the store or an `app` function, and end
//! every mutation through `audit::finish` so the audit record shares the change's transaction.

pub mod accounts;
pub mod audit;
pub mod complexes;
pub mod enrollment;
pub mod event_actions;
pub mod events;
pub mod extract;
pub mod files;
pub mod groups;
pub mod health;
pub mod hosts;
pub mod jobs;
pub mod monitors;
pub mod networks;
pub mod operations;
pub mod os_templates;
pub mod packages;
pub mod server_templates;
pub mod shell;
pub mod system_admin;
pub mod systems;
pub mod users;
pub mod virtual_servers;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::routing::{delete, get, post};
use steward_types::ErrorCode;
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::state::AppState;

/// The largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Steward API", description = "Systems management for Linux fleets and their hypervisors."),
    paths(
        health::health,
        users::whoami,
        users::user_list, users::user_create, users::user_show, users::user_update, users::user_delete,
        users::token_list, users::token_create, users::token_delete,
        enrollment::enrollment_token_list, enrollment::enrollment_token_create, enrollment::enrollment_token_delete,
        enrollment::enrollment_create,
        systems::system_list, systems::system_show, systems::system_delete,
        systems::system_inventory_history, systems::system_refresh_inventory, systems::system_run_command,
        groups::group_list, groups::group_create, groups::group_show, groups::group_update, groups::group_delete,
        groups::group_members, groups::group_members_add, groups::group_member_remove,
        audit::audit_list,
        hosts::host_list, hosts::host_show, hosts::host_guests, hosts::host_create, hosts::host_delete,
        networks::network_list, networks::network_create, networks::network_show, networks::network_delete,
        server_templates::server_template_list, server_templates::server_template_create,
        server_templates::server_template_show, server_templates::server_template_delete,
        os_templates::os_template_list, os_templates::os_template_import, os_templates::os_template_show,
        os_templates::os_template_delete,
        virtual_servers::virtual_server_list, virtual_servers::virtual_server_create, virtual_servers::virtual_server_show,
        virtual_servers::virtual_server_delete, virtual_servers::virtual_server_register, virtual_servers::virtual_server_deploy,
        virtual_servers::virtual_server_start, virtual_servers::virtual_server_stop, virtual_servers::virtual_server_restart,
        virtual_servers::virtual_server_capture, virtual_servers::virtual_server_console,
        operations::operation_list, operations::operation_show,
        complexes::complex_list, complexes::complex_create, complexes::complex_show, complexes::complex_update,
        complexes::complex_delete, complexes::complex_add_members, complexes::complex_remove_members,
        complexes::complex_check, complexes::complex_apply, complexes::complex_adopt,
        events::event_list,
        event_actions::event_action_plan_list, event_actions::event_action_plan_create,
        event_actions::event_action_plan_show, event_actions::event_action_plan_update,
        event_actions::event_action_plan_delete, event_actions::delivery_list,
        event_actions::maintenance_window_list, event_actions::maintenance_window_create,
        event_actions::maintenance_window_show, event_actions::maintenance_window_delete,
        jobs::job_list, jobs::job_create, jobs::job_show, jobs::job_delete, jobs::job_enable, jobs::job_run,
        jobs::job_runs, jobs::job_run_show,
        monitors::monitor_list, monitors::monitor_create, monitors::monitor_show, monitors::monitor_delete,
        monitors::system_metrics,
        system_admin::system_processes, system_admin::system_process_signal, system_admin::group_process_signal,
        system_admin::system_services, system_admin::system_service_action, system_admin::group_service_action,
        system_admin::system_network, system_admin::system_facts,
        files::system_file_push, files::system_file_pull, files::group_file_push,
        shell::system_shell, shell::system_stream_command,
        packages::package_upload, packages::package_list, packages::package_show, packages::package_delete,
        packages::package_build, packages::package_distribute,
        accounts::system_accounts, accounts::system_account_change, accounts::group_account_change,
    ),
    components(schemas(steward_types::ErrorResponse)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document as pretty JSON, exactly as committed in `openapi.json`.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json().unwrap_or_default() + "\n"
}

pub fn router(state: AppState) -> Router {
    let openapi = openapi_json();
    let api = Router::new()
        .route("/health", get(health::health))
        .route(
            "/openapi.json",
            get(move || async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi) }),
        )
        .route("/whoami", get(users::whoami))
        .route("/users", get(users::user_list).post(users::user_create))
        .route("/users/{user}", get(users::user_show).patch(users::user_update).delete(users::user_delete))
        .route("/tokens", get(users::token_list).post(users::token_create))
        .route("/tokens/{token}", delete(users::token_delete))
        .route("/enrollment-tokens", get(enrollment::enrollment_token_list).post(enrollment::enrollment_token_create))
        .route("/enrollment-tokens/{token}", delete(enrollment::enrollment_token_delete))
        .route("/enrollments", post(enrollment::enrollment_create))
        .route("/systems", get(systems::system_list))
        .route("/systems/{system}", get(systems::system_show).delete(systems::system_delete))
        .route("/systems/{system}/inventory-history", get(systems::system_inventory_history))
        .route("/systems/{system}/refresh-inventory", post(systems::system_refresh_inventory))
        .route("/systems/{system}/commands", post(systems::system_run_command))
        .route("/systems/{system}/commands/stream", post(shell::system_stream_command))
        .route("/systems/{system}/shell", get(shell::system_shell))
        .route("/systems/{system}/files", get(files::system_file_pull).put(files::system_file_push))
        .route("/groups/{group}/files", post(files::group_file_push))
        .route("/groups", get(groups::group_list).post(groups::group_create))
        .route("/groups/{group}", get(groups::group_show).patch(groups::group_update).delete(groups::group_delete))
        .route("/groups/{group}/members", get(groups::group_members).post(groups::group_members_add))
        .route("/groups/{group}/members/{system}", delete(groups::group_member_remove))
        .route("/audit", get(audit::audit_list))
        .route("/monitors", get(monitors::monitor_list).post(monitors::monitor_create))
        .route("/monitors/{monitor}", get(monitors::monitor_show).delete(monitors::monitor_delete))
        .route("/systems/{system}/metrics", get(monitors::system_metrics))
        .route("/jobs", get(jobs::job_list).post(jobs::job_create))
        .route("/jobs/{job}", get(jobs::job_show).delete(jobs::job_delete))
        .route("/jobs/{job}/enabled", post(jobs::job_enable))
        .route("/jobs/{job}/run", post(jobs::job_run))
        .route("/jobs/{job}/runs", get(jobs::job_runs))
        .route("/job-runs/{run}", get(jobs::job_run_show))
        .route("/hosts", get(hosts::host_list).post(hosts::host_create))
        .route("/hosts/{host}", get(hosts::host_show).delete(hosts::host_delete))
        .route("/hosts/{host}/guests", get(hosts::host_guests))
        .route("/networks", get(networks::network_list).post(networks::network_create))
        .route("/networks/{network}", get(networks::network_show).delete(networks::network_delete))
        .route(
            "/server-templates",
            get(server_templates::server_template_list).post(server_templates::server_template_create),
        )
        .route(
            "/server-templates/{template}",
            get(server_templates::server_template_show).delete(server_templates::server_template_delete),
        )
        .route("/os-templates", get(os_templates::os_template_list).post(os_templates::os_template_import))
        .route("/os-templates/{template}", get(os_templates::os_template_show).delete(os_templates::os_template_delete))
        .route(
            "/virtual-servers",
            get(virtual_servers::virtual_server_list).post(virtual_servers::virtual_server_create),
        )
        .route("/virtual-servers/register", post(virtual_servers::virtual_server_register))
        .route(
            "/virtual-servers/{virtual_server}",
            get(virtual_servers::virtual_server_show).delete(virtual_servers::virtual_server_delete),
        )
        .route("/virtual-servers/{virtual_server}/deploy", post(virtual_servers::virtual_server_deploy))
        .route("/virtual-servers/{virtual_server}/start", post(virtual_servers::virtual_server_start))
        .route("/virtual-servers/{virtual_server}/stop", post(virtual_servers::virtual_server_stop))
        .route("/virtual-servers/{virtual_server}/restart", post(virtual_servers::virtual_server_restart))
        .route("/virtual-servers/{virtual_server}/capture", post(virtual_servers::virtual_server_capture))
        .route("/virtual-servers/{virtual_server}/console", get(virtual_servers::virtual_server_console))
        .route("/operations", get(operations::operation_list))
        .route("/operations/{operation}", get(operations::operation_show))
        .route("/complexes", get(complexes::complex_list).post(complexes::complex_create))
        .route(
            "/complexes/{complex}",
            get(complexes::complex_show).put(complexes::complex_update).delete(complexes::complex_delete),
        )
        .route("/complexes/{complex}/add-members", post(complexes::complex_add_members))
        .route("/complexes/{complex}/remove-members", post(complexes::complex_remove_members))
        .route("/complexes/{complex}/check", post(complexes::complex_check))
        .route("/complexes/{complex}/apply", post(complexes::complex_apply))
        .route("/complexes/{complex}/adopt", post(complexes::complex_adopt))
        .route("/events", get(events::event_list))
        .route("/systems/{system}/processes", get(system_admin::system_processes))
        .route("/systems/{system}/processes/{pid}/signal", post(system_admin::system_process_signal))
        .route("/groups/{group}/processes/signal", post(system_admin::group_process_signal))
        .route("/systems/{system}/services", get(system_admin::system_services))
        .route("/systems/{system}/services/{service}/{action}", post(system_admin::system_service_action))
        .route("/groups/{group}/services/{service}/{action}", post(system_admin::group_service_action))
        .route("/systems/{system}/network", get(system_admin::system_network))
        .route("/systems/{system}/facts", get(system_admin::system_facts))
        .route(
            "/event-action-plans",
            get(event_actions::event_action_plan_list).post(event_actions::event_action_plan_create),
        )
        .route(
            "/event-action-plans/{plan}",
            get(event_actions::event_action_plan_show)
                .put(event_actions::event_action_plan_update)
                .delete(event_actions::event_action_plan_delete),
        )
        .route("/deliveries", get(event_actions::delivery_list))
        .route(
            "/maintenance-windows",
            get(event_actions::maintenance_window_list).post(event_actions::maintenance_window_create),
        )
        .route(
            "/maintenance-windows/{window}",
            get(event_actions::maintenance_window_show).delete(event_actions::maintenance_window_delete),
        )
        .route("/packages", get(packages::package_list).post(packages::package_upload))
        .route("/packages/build", post(packages::package_build))
        .route("/packages/{package}", get(packages::package_show).delete(packages::package_delete))
        .route("/packages/{package}/distribute", post(packages::package_distribute))
        .route("/systems/{system}/accounts", get(accounts::system_accounts).post(accounts::system_account_change))
        .route("/groups/{group}/accounts", post(accounts::group_account_change))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(monitors::prometheus))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("there is no endpoint {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, format!("{} does not accept {method}", uri.path()))
}

/// Shorthand for a `201 Created` with a JSON body.
pub type Created<T> = (axum::http::StatusCode, axum::Json<T>);

pub fn created<T>(value: T) -> Created<T> {
    (axum::http::StatusCode::CREATED, axum::Json(value))
}
