//! Server complexes: `/api/v1/complexes` (create, list, show, update, delete) and their actions: add-members,
//! remove-members (operations with one child operation per member), check (the consistency report; new
//! deviations become events), apply (an operation making members consistent) and adopt (a member's actual value
//! becomes its desired one). The logic is in `app::complexes`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use steward_store::complexes::ComplexRecord;
use steward_store::virtual_servers::VirtualServerState;
use steward_types::api::complexes::{
    Complex, ComplexAdopt, ComplexApply, ComplexApplyStarted, ComplexCreate, ComplexMember, ComplexMembersAdd,
    ComplexMembersRemove, ComplexUpdate, ConsistencyReport, MemberAddress, MemberState,
};
use steward_types::api::operations::OperationAccepted;
use steward_types::api::{Role, Timestamp};
use steward_types::{ComplexId, ErrorResponse, OperationId, validate};

use crate::api::extract::{self, Path};
use crate::api::hosts::find_host;
use crate::api::operations::{Accepted, OperationStart, operation_accepted, operation_record};
use crate::app::complexes::check::{Finding, check, property_selected};
use crate::app::complexes::definition::resolve;
use crate::app::complexes::{Context, find_complex, plan, reconciler};
use crate::app::sagas::{complex_member_add, complex_member_apply, complex_members, virtual_server_delete};
use crate::audit::{AuditEntry, finish};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Members cloned or changed at the same time unless the request says.
const DEFAULT_PARALLEL: u32 = 4;

async fn view(conn: &mut steward_store::Conn, complex: ComplexRecord) -> ApiResult<Complex> {
    let host = steward_store::hosts::get(conn, &complex.host.to_string())
        .await?
        .map(|host| host.name)
        .unwrap_or_else(|| complex.host.to_string());
    let members = steward_store::complexes::members(conn, complex.id)
        .await?
        .into_iter()
        .map(|member| {
            let server = member.virtual_server.server;
            ComplexMember {
                addresses: server
                    .nics
                    .iter()
                    .filter_map(|nic| {
                        nic.address.clone().map(|address| MemberAddress { network: nic.network.clone(), address })
                    })
                    .collect(),
                name: server.name,
                virtual_server: server.id,
                system: server.system,
                tier: member.tier,
                index: member.index,
                state: match member.virtual_server.state {
                    VirtualServerState::Creating => MemberState::Creating,
                    VirtualServerState::Ready => MemberState::Ready,
                    VirtualServerState::Deleting => MemberState::Deleting,
                },
                adopted: member.adopted,
            }
        })
        .collect();
    Ok(Complex {
        deviations: steward_store::complexes::deviation_count(conn, complex.id).await?,
        id: complex.id,
        name: complex.name,
        host,
        definition: complex.definition,
        members,
        last_checked_at: complex.last_checked_at,
        created_at: complex.created_at,
    })
}

#[utoipa::path(get, path = "/api/v1/complexes", tag = "complexes", responses((status = 200, body = Vec<Complex>)))]
pub async fn complex_list(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Vec<Complex>>> {
    let mut conn = state.store.conn().await?;
    let mut complexes = Vec::new();
    for complex in steward_store::complexes::list(&mut conn).await? {
        complexes.push(view(&mut conn, complex).await?);
    }
    Ok(Json(complexes))
}

#[utoipa::path(post, path = "/api/v1/complexes", tag = "complexes", request_body = ComplexCreate,
    responses((status = 201, body = Complex), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub async fn complex_create(
    State(state): State<AppState>,
    caller: Caller,
    extract::Json(body): extract::Json<ComplexCreate>,
) -> ApiResult<(StatusCode, Json<Complex>)> {
    let tiers: Vec<&str> = body.definition.tiers.iter().map(|tier| tier.name.as_str()).collect();
    let entry = AuditEntry::new(&caller.user.name, "complex.create", &body.name)
        .details(serde_json::json!({ "host": body.host, "tiers": tiers }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        validate::name("name", &body.name)?;
        let (host, driver) = find_host(&state, &mut tx, &body.host).await?;
        let facts = driver.probe().await?;
        resolve(
            &mut tx,
            &body.name,
            &host.name,
            &driver.capabilities(),
            Some(facts.memory_total_bytes),
            &body.definition,
        )
        .await?;
        if steward_store::complexes::get(&mut tx, &body.name).await?.is_some() {
            return Err(ApiError::conflict(format!("complex {:?} already exists", body.name)));
        }
        let record = ComplexRecord {
            id: ComplexId::new(),
            name: body.name.clone(),
            host: host.id,
            definition: body.definition.clone(),
            last_checked_at: None,
            created_at: Timestamp::now(),
        };
        steward_store::complexes::insert(&mut tx, &record).await?;
        view(&mut tx, record).await
    }
    .await;
    finish(&state, tx, entry, result).await.map(|complex| (StatusCode::CREATED, Json(complex)))
}

#[utoipa::path(get, path = "/api/v1/complexes/{complex}", tag = "complexes",
    params(("complex" = String, Path, description = "Name or ID")),
    responses((status = 200, body = Complex), (status = 404, body = ErrorResponse)))]
pub async fn complex_show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Complex>> {
    let mut conn = state.store.conn().await?;
    let complex = find_complex(&mut conn, &name).await?;
    Ok(Json(view(&mut conn, complex).await?))
}

#[utoipa::path(put, path = "/api/v1/complexes/{complex}", tag = "complexes",
    params(("complex" = String, Path, description = "Name or ID")), request_body = ComplexUpdate,
    responses((status = 200, body = Complex), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub async fn complex_update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    extract::Json(body): extract::Json<ComplexUpdate>,
) -> ApiResult<Json<Complex>> {
    let entry = AuditEntry::new(&caller.user.name, "complex.update", &name)
        .details(serde_json::to_value(&body.definition).unwrap_or_default());
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let complex = find_complex(&mut tx, &name).await?;
        let (host, driver) = find_host(&state, &mut tx, &complex.host.to_string()).await?;
        let facts = driver.probe().await?;
        resolve(
            &mut tx,
            &complex.name,
            &host.name,
            &driver.capabilities(),
            Some(facts.memory_total_bytes),
            &body.definition,
        )
        .await?;
        let members = steward_store::complexes::members(&mut tx, complex.id).await?;
        for member in &members {
            let old = complex.definition.tiers.iter().find(|tier| tier.name == member.tier);
            let new = body.definition.tiers.iter().find(|tier| tier.name == member.tier);
            let unchanged = match (old, new) {
                (Some(old), Some(new)) => {
                    (&old.server_template, &old.os_template, &old.naming)
                        == (&new.server_template, &new.os_template, &new.naming)
                }
                _ => false,
            };
            if !unchanged {
                return Err(ApiError::conflict(format!(
                    "tier {:?} has members (for example {}): it must stay, with the same templates and naming; \
                     remove its members first to change those",
                    member.tier, member.virtual_server.server.name
                )));
            }
        }
        steward_store::complexes::set_definition(&mut tx, complex.id, &body.definition).await?;
        let complex = find_complex(&mut tx, &complex.id.to_string()).await?;
        view(&mut tx, complex).await
    }
    .await;
    finish(&state, tx, entry, result).await.map(Json)
}

#[utoipa::path(delete, path = "/api/v1/complexes/{complex}", tag = "complexes",
    params(("complex" = String, Path, description = "Name or ID")),
    responses((status = 204), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn complex_delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = AuditEntry::new(&caller.user.name, "complex.delete", &name);
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let complex = find_complex(&mut tx, &name).await?;
        let members = steward_store::complexes::members(&mut tx, complex.id).await?;
        if let Some(member) = members.first() {
            return Err(ApiError::conflict(format!(
                "complex {:?} has {} member(s) (for example {}); remove them first (steward complexes remove-members)",
                complex.name,
                members.len(),
                member.virtual_server.server.name
            )));
        }
        if let Some(active) = steward_store::operations::active_for_target(&mut tx, &complex.id.to_string()).await? {
            return Err(ApiError::conflict(format!("complex {:?} is busy with operation {active}", complex.name)));
        }
        steward_store::complexes::delete(&mut tx, complex.id).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    finish(&state, tx, entry, result).await
}

/// Records a parent operation on the complex and one child per member, in that order (children refer to it).
async fn record_family<P: Serialize>(
    tx: &mut steward_store::Conn,
    caller: &Caller,
    complex: &ComplexRecord,
    kind: &str,
    parallel: u32,
    children: Vec<(String, steward_types::VirtualServerId, &str, &[&str], P)>,
) -> ApiResult<OperationId> {
    let parent = OperationId::new();
    let ids: Vec<OperationId> = children.iter().map(|_| OperationId::new()).collect();
    let params = complex_members::Params {
        complex: complex.name.clone(),
        children: children
            .iter()
            .zip(&ids)
            .map(|((member, ..), id)| complex_members::Child { operation: *id, member: member.clone() })
            .collect(),
        parallel,
    };
    operation_record(
        tx,
        caller,
        OperationStart {
            id: parent,
            kind,
            steps: complex_members::STEPS,
            target_kind: "complex",
            target_id: complex.id.to_string(),
            target_name: &complex.name,
            params: &params,
            parent: None,
        },
    )
    .await?;
    for ((member, server, child_kind, steps, child_params), id) in children.iter().zip(ids) {
        operation_record(
            tx,
            caller,
            OperationStart {
                id,
                kind: child_kind,
                steps,
                target_kind: "virtual_server",
                target_id: server.to_string(),
                target_name: member,
                params: child_params,
                parent: Some(parent),
            },
        )
        .await?;
    }
    Ok(parent)
}

fn parallel(requested: Option<u32>) -> ApiResult<u32> {
    let parallel = requested.unwrap_or(DEFAULT_PARALLEL);
    if !(1..=complex_members::MAX_PARALLEL).contains(&parallel) {
        return Err(ApiError::validation("parallel", format!("must be 1 to {}", complex_members::MAX_PARALLEL)));
    }
    Ok(parallel)
}

#[utoipa::path(post, path = "/api/v1/complexes/{complex}/add-members", tag = "complexes",
    params(("complex" = String, Path, description = "Name or ID")), request_body = ComplexMembersAdd,
    responses((status = 202, body = OperationAccepted), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn complex_add_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    extract::Json(body): extract::Json<ComplexMembersAdd>,
) -> ApiResult<Accepted> {
    let entry = AuditEntry::new(&caller.user.name, "complex.add_members", &name).details(
        serde_json::json!({ "tier": body.tier, "count": body.count, "start": body.start, "clone": body.clone }),
    );
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let parallel = parallel(body.parallel)?;
        let context = Context::load(&state, &mut tx, &name).await?;
        let Some(tier) = context.tier(&body.tier) else {
            let tiers: Vec<&str> = context.tiers.iter().map(|tier| tier.tier.name.as_str()).collect();
            return Err(ApiError::validation(
                "tier",
                format!("complex {:?} has no tier {:?} (tiers: {})", context.complex.name, body.tier, tiers.join(", ")),
            ));
        };
        let facts = context.driver.probe().await?;
        let planned = plan::members_add(&mut tx, &context, &facts, tier, &body).await?;
        let children = planned
            .into_iter()
            .map(|params| {
                (
                    params.server.name.clone(),
                    params.server.id,
                    complex_member_add::KIND,
                    complex_member_add::STEPS,
                    params,
                )
            })
            .collect();
        record_family(&mut tx, &caller, &context.complex, complex_members::ADD, parallel, children).await
    }
    .await;
    let operation = finish(&state, tx, entry, result).await?;
    operation_accepted(&state, operation).await
}

#[utoipa::path(post, path = "/api/v1/complexes/{complex}/remove-members", tag = "complexes",
    params(("complex" = String, Path, description = "Name or ID")), request_body = ComplexMembersRemove,
    responses((status = 202, body = OperationAccepted), (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse)))]
pub async fn complex_remove_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    extract::Json(body): extract::Json<ComplexMembersRemove>,
) -> ApiResult<Accepted> {
    let entry = AuditEntry::new(&caller.user.name, "complex.remove_members", &name)
        .details(serde_json::json!({ "members": body.members }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        if body.members.is_empty() {
            return Err(ApiError::validation("members", "name at least one member"));
        }
        let complex = find_complex(&mut tx, &name).await?;
        let (_, driver) = find_host(&state, &mut tx, &complex.host.to_string()).await?;
        let members = steward_store::complexes::members(&mut tx, complex.id).await?;
        let mut children: Vec<(String, steward_types::VirtualServerId, &str, &[&str], virtual_server_delete::Params)> =
            Vec::new();
        for (position, wanted) in body.members.iter().enumerate() {
            let Some(member) = members.iter().find(|member| &member.virtual_server.server.name == wanted) else {
                return Err(ApiError::validation(
                    &format!("members[{position}]"),
                    format!("{wanted:?} is not a member of complex {:?}", complex.name),
                ));
            };
            if member.virtual_server.state == VirtualServerState::Creating {
                return Err(ApiError::conflict(format!("member {wanted:?} is still being created")));
            }
            if children.iter().any(|(name, ..)| name == wanted) {
                continue;
            }
            let server = member.virtual_server.server.clone();
            let taps = driver
                .spec(&server.name)
                .await
                .map(|spec| spec.nics.into_iter().map(|nic| nic.tap).collect())
                .unwrap_or_default();
            let params =
                virtual_server_delete::Params { host: complex.host, server: server.clone(), taps, was_running: None };
            children.push((
                server.name.clone(),
                server.id,
                virtual_server_delete::KIND,
                virtual_server_delete::STEPS,
                params,
            ));
        }
        record_family(&mut tx, &caller, &complex, complex_members::REMOVE, DEFAULT_PARALLEL, children).await
    }
    .await;
    let operation = finish(&state, tx, entry, result).await?;
    operation_accepted(&state, operation).await
}

/// Checks (all members or one) and records the findings; new deviations become events.
async fn check_now(state: &AppState, name: &str, member: Option<&str>) -> ApiResult<(Arc<Context>, Vec<Finding>)> {
    let mut conn = state.store.conn().await?;
    let context = Arc::new(Context::load(state, &mut conn, name).await?);
    drop(conn);
    if let Some(member) = member {
        context.member(member)?;
    }
    let (findings, checked) = check(state, context.clone(), member).await;
    reconciler::record(state, &context, &findings, &checked).await?;
    Ok((context, findings))
}

#[utoipa::path(post, path = "/api/v1/complexes/{complex}/check", tag = "complexes",
    params(("complex" = String, Path, description = "Name or ID")),
    responses((status = 200, body = ConsistencyReport), (status = 404, body = ErrorResponse)))]
pub async fn complex_check(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ConsistencyReport>> {
    caller.require(Role::Operator)?;
    let (context, findings) = check_now(&state, &name, None).await?;
    let members_checked =
        context.members.iter().filter(|member| member.virtual_server.state == VirtualServerState::Ready).count() as u32;
    Ok(Json(ConsistencyReport {
        complex: context.complex.name.clone(),
        checked_at: Timestamp::now(),
        members_checked,
        deviations: findings.into_iter().map(|finding| finding.deviation).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/complexes/{complex}/apply", tag = "complexes",
    params(("complex" = String, Path, description = "Name or ID")), request_body = ComplexApply,
    responses((status = 202, body = ComplexApplyStarted), (status = 200, body = ComplexApplyStarted),
        (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn complex_apply(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    extract::Json(body): extract::Json<ComplexApply>,
) -> ApiResult<(StatusCode, Json<ComplexApplyStarted>)> {
    caller.require(Role::Operator)?;
    // The check asks every member's agent, so it runs before the write transaction.
    let (_, findings) = check_now(&state, &name, body.member.as_deref()).await?;
    let selected: Vec<Finding> = findings
        .into_iter()
        .filter(|finding| property_selected(&finding.deviation.property, body.property.as_deref()))
        .collect();
    let entry = AuditEntry::new(&caller.user.name, "complex.apply", &name).details(serde_json::json!({
        "member": body.member, "property": body.property,
        "deviations": selected.iter().map(|finding| format!("{} {}", finding.deviation.member, finding.deviation.property)).collect::<Vec<_>>(),
    }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let context = Context::load(&state, &mut tx, &name).await?;
        let mut children = Vec::new();
        let mut by_member: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for finding in &selected {
            by_member.entry(finding.deviation.member.as_str()).or_default().push(finding);
        }
        for (member_name, member_findings) in by_member {
            let Ok(member) = context.member(member_name) else { continue };
            if member.virtual_server.state != VirtualServerState::Ready {
                continue;
            }
            if let Some(params) = plan::member_apply(&mut tx, &context, member, &member_findings).await? {
                let server = &member.virtual_server.server;
                children.push((
                    server.name.clone(),
                    server.id,
                    complex_member_apply::KIND,
                    complex_member_apply::STEPS,
                    params,
                ));
            }
        }
        if children.is_empty() {
            return Ok(None);
        }
        record_family(&mut tx, &caller, &context.complex, complex_members::APPLY, DEFAULT_PARALLEL, children)
            .await
            .map(Some)
    }
    .await;
    let deviations = selected.into_iter().map(|finding| finding.deviation).collect();
    match finish(&state, tx, entry, result).await? {
        Some(operation) => {
            let (status, Json(accepted)) = operation_accepted(&state, operation).await?;
            Ok((status, Json(ComplexApplyStarted { operation: Some(accepted.operation), deviations })))
        }
        None => Ok((StatusCode::OK, Json(ComplexApplyStarted { operation: None, deviations }))),
    }
}

#[utoipa::path(post, path = "/api/v1/complexes/{complex}/adopt", tag = "complexes",
    params(("complex" = String, Path, description = "Name or ID")), request_body = ComplexAdopt,
    responses((status = 200, body = Complex), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse),
        (status = 422, body = ErrorResponse)))]
pub async fn complex_adopt(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    extract::Json(body): extract::Json<ComplexAdopt>,
) -> ApiResult<Json<Complex>> {
    caller.require(Role::Operator)?;
    let (context, findings) = check_now(&state, &name, Some(&body.member)).await?;
    let entry = AuditEntry::new(&caller.user.name, "complex.adopt", &name)
        .details(serde_json::json!({ "member": body.member, "property": body.property }));
    let mut tx = crate::audit::begin(&state, &caller, Role::Operator, &entry).await?;
    let result = async {
        let Some(finding) = findings.iter().find(|finding| finding.deviation.property == body.property) else {
            let properties: Vec<&str> = findings.iter().map(|finding| finding.deviation.property.as_str()).collect();
            return Err(ApiError::conflict(format!(
                "member {} does not deviate in {:?} (checked now; its deviations: {})",
                body.member,
                body.property,
                if properties.is_empty() { "none".to_owned() } else { properties.join(", ") }
            )));
        };
        let value = plan::adoptable(finding)?;
        let member = context.member(&body.member)?;
        let mut adopted = member.adopted.clone();
        adopted.insert(body.property.clone(), value);
        steward_store::complexes::member_set_adopted(&mut tx, member.virtual_server.server.id, &adopted).await?;
        let remaining: Vec<_> = findings
            .iter()
            .filter(|other| other.deviation.property != body.property)
            .map(|other| other.deviation.clone())
            .collect();
        steward_store::complexes::deviations_record(
            &mut tx,
            context.complex.id,
            std::slice::from_ref(&body.member),
            &remaining,
            Timestamp::now(),
        )
        .await?;
        let complex = find_complex(&mut tx, &context.complex.id.to_string()).await?;
        view(&mut tx, complex).await
    }
    .await;
    finish(&state, tx, entry, result).await.map(Json)
}
