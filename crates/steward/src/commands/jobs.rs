//! `steward jobs ...`: scheduled jobs (a command on a system or a group, once, on a cron schedule, or on demand)
//! and their runs with a result per target.

use std::time::Duration;

use clap::Subcommand;
use steward_types::api::Timestamp;
use steward_types::api::jobs::{
    Job, JobCreate, JobEnable, JobRun, JobRunState, JobSchedule, JobTarget, JobTask, MissedRuns, TargetState,
};
use steward_types::api::systems::SystemCommand;

use super::{Context, ExitWithOutput};
use crate::client::segment;
use crate::output::{Format, Table, fields, json, label, optional};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Create a job: `steward jobs create nightly --group web --cron "0 3 * * *" --time-zone Europe/Berlin --
    /// /usr/local/bin/backup`.
    Create(Box<JobCreateArgs>),
    /// List jobs with their next run.
    List,
    /// Show a job and its latest runs.
    Show { job: String },
    /// Delete a job and its history.
    Delete { job: String },
    /// Run a job now (whatever its schedule) and wait for its result per target; exit 1 if a target failed.
    Run {
        job: String,
        /// Return at once with the run's ID.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show one run with its result per target (output included).
    Result { run: String },
    /// Let the job run by itself again (from now on).
    Enable { job: String },
    /// Stop the job from running by itself (it can still be run on demand).
    Disable { job: String },
}

#[derive(Debug, clap::Args)]
pub struct JobCreateArgs {
    name: String,
    /// The system to run on.
    #[arg(long, conflicts_with = "group", required_unless_present = "group")]
    system: Option<String>,
    /// The group to run on (its members at the time of each run).
    #[arg(long)]
    group: Option<String>,
    /// A cron schedule: five fields (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, ...
    #[arg(long, conflicts_with_all = ["at", "manual"])]
    cron: Option<String>,
    /// The IANA time zone of the cron schedule.
    #[arg(long, default_value = "UTC", requires = "cron")]
    time_zone: String,
    /// Run once at this time (RFC 3339, for example 2026-12-24T18:00:00Z).
    #[arg(long, conflicts_with = "manual")]
    at: Option<String>,
    /// Run only on demand (steward jobs run).
    #[arg(long)]
    manual: bool,
    /// What happens to runs missed while the server was down: run-once (default) or skip.
    #[arg(long, value_parser = ["run-once", "skip"], default_value = "run-once")]
    missed: String,
    /// Targets worked on at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Seconds after which the command is killed on a target.
    #[arg(long, default_value_t = 300)]
    timeout: u32,
    /// Free text saying what it is for.
    #[arg(long)]
    description: Option<String>,
    /// The program and its arguments (after `--`).
    #[arg(last = true, required = true)]
    argv: Vec<String>,
}

fn schedule_text(schedule: &JobSchedule) -> String {
    match schedule {
        JobSchedule::Once { at } => format!("once at {at}"),
        JobSchedule::Cron { expression, time_zone } => format!("cron {expression:?} ({time_zone})"),
        JobSchedule::Manual => "on demand".to_owned(),
    }
}

fn target_text(target: &JobTarget) -> String {
    match target {
        JobTarget::System { system } => format!("system {system}"),
        JobTarget::Group { group } => format!("group {group}"),
    }
}

fn runs_table(runs: &[JobRun]) -> String {
    let mut table = Table::new(&["RUN", "TRIGGER", "STATE", "TARGETS", "OK", "FAILED", "STARTED", "FINISHED"]);
    for run in runs {
        table.row(vec![
            run.id.to_string(),
            label(&run.trigger),
            label(&run.state),
            run.targets.to_string(),
            run.succeeded.to_string(),
            run.failed.to_string(),
            run.started_at.to_string(),
            optional(&run.finished_at),
        ]);
    }
    table.render()
}

fn render_run(run: &JobRun) -> String {
    let mut out = fields(&[
        ("Run", run.id.to_string()),
        ("Job", run.job.clone()),
        ("Trigger", label(&run.trigger)),
        ("State", label(&run.state)),
        ("Targets", format!("{} ({} succeeded, {} failed)", run.targets, run.succeeded, run.failed)),
        ("Started", run.started_at.to_string()),
        ("Finished", optional(&run.finished_at)),
    ]);
    for result in &run.results {
        out.push_str(&format!(
            "\n{} [{}]{}\n",
            result.system,
            label(&result.state),
            result.error.as_deref().map(|error| format!(" {error}")).unwrap_or_default()
        ));
        for line in result.stdout.lines() {
            out.push_str(&format!("  {line}\n"));
        }
        for line in result.stderr.lines() {
            out.push_str(&format!("  stderr: {line}\n"));
        }
    }
    out
}

async fn wait_for(context: &Context, run: &JobRun) -> anyhow::Result<JobRun> {
    let path = format!("/job-runs/{}", run.id);
    loop {
        let current: JobRun = context.client.get(&path, &[]).await?;
        if current.state != JobRunState::Running {
            return Ok(current);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn run(context: &Context, command: JobsCommand) -> anyhow::Result<String> {
    let client = &context.client;
    let render_job = |job: &Job| match context.format {
        Format::Json => json(job),
        Format::Table => fields(&[
            ("Name", job.name.clone()),
            ("ID", job.id.to_string()),
            ("Target", target_text(&job.target)),
            ("Schedule", schedule_text(&job.schedule)),
            ("Enabled", if job.enabled { "yes".into() } else { "no".into() }),
            ("Next run", optional(&job.next_run_at)),
            ("Missed runs", label(&job.missed_runs)),
            ("Concurrency", job.concurrency.to_string()),
            (
                "Task",
                match &job.task {
                    JobTask::Command { command } => command.argv.join(" "),
                    JobTask::Package { package, action } => format!("package {} {package}", action.as_str()),
                },
            ),
            ("Description", job.description.clone()),
            ("Created", format!("{} by {}", job.created_at, job.created_by)),
        ]),
    };
    match command {
        JobsCommand::Create(args) => {
            let JobCreateArgs {
                name,
                system,
                group,
                cron,
                time_zone,
                at,
                manual,
                missed,
                concurrency,
                timeout,
                description,
                argv,
            } = *args;
            let target = match (system, group) {
                (Some(system), _) => JobTarget::System { system },
                (None, Some(group)) => JobTarget::Group { group },
                (None, None) => anyhow::bail!("name a --system or a --group"),
            };
            let schedule = match (cron, at, manual) {
                (Some(expression), _, _) => JobSchedule::Cron { expression, time_zone },
                (None, Some(at), _) => JobSchedule::Once {
                    at: Timestamp::parse_rfc3339(&at).ok_or_else(|| {
                        anyhow::anyhow!("--at {at:?} is not an RFC 3339 time such as 2026-12-24T18:00:00Z")
                    })?,
                },
                (None, None, true) => JobSchedule::Manual,
                (None, None, false) => anyhow::bail!("say when it runs: --cron, --at or --manual"),
            };
            let body = JobCreate {
                name,
                description,
                task: JobTask::Command {
                    command: SystemCommand {
                        argv,
                        environment: Default::default(),
                        stdin: None,
                        timeout_seconds: timeout,
                        working_directory: None,
                    },
                },
                target,
                schedule,
                missed_runs: if missed == "skip" { MissedRuns::Skip } else { MissedRuns::RunOnce },
                concurrency,
                enabled: None,
            };
            let job: Job = client.post("/jobs", &body).await?;
            Ok(render_job(&job))
        }
        JobsCommand::List => {
            let jobs: Vec<Job> = client.list_all("/jobs", &[], None).await?;
            Ok(match context.format {
                Format::Json => json(&jobs),
                Format::Table => {
                    let mut table = Table::new(&["NAME", "TARGET", "SCHEDULE", "ENABLED", "NEXT RUN"]);
                    for job in &jobs {
                        table.row(vec![
                            job.name.clone(),
                            target_text(&job.target),
                            schedule_text(&job.schedule),
                            if job.enabled { "yes".into() } else { "no".into() },
                            optional(&job.next_run_at),
                        ]);
                    }
                    table.render()
                }
            })
        }
        JobsCommand::Show { job } => {
            let found: Job = client.get(&format!("/jobs/{}", segment(&job)), &[]).await?;
            let runs: Vec<JobRun> = client.list_all(&format!("/jobs/{}/runs", segment(&job)), &[], Some(10)).await?;
            Ok(match context.format {
                Format::Json => json(&serde_json::json!({ "job": found, "runs": runs })),
                Format::Table => format!("{}\nLatest runs:\n{}", render_job(&found), runs_table(&runs)),
            })
        }
        JobsCommand::Delete { job } => {
            client.delete(&format!("/jobs/{}", segment(&job))).await?;
            Ok(format!("Job {job} deleted.\n"))
        }
        JobsCommand::Run { job, no_wait } => {
            let started: JobRun = client.post(&format!("/jobs/{}/run", segment(&job)), &serde_json::json!({})).await?;
            if no_wait {
                return Ok(format!("{}\n", started.id));
            }
            let finished = wait_for(context, &started).await?;
            let text = match context.format {
                Format::Json => json(&finished),
                Format::Table => render_run(&finished),
            };
            if finished.results.iter().any(|result| result.state != TargetState::Succeeded) || finished.targets == 0 {
                return Err(ExitWithOutput { output: text, code: 1 }.into());
            }
            Ok(text)
        }
        JobsCommand::Result { run } => {
            let found: JobRun = client.get(&format!("/job-runs/{}", segment(&run)), &[]).await?;
            Ok(match context.format {
                Format::Json => json(&found),
                Format::Table => render_run(&found),
            })
        }
        JobsCommand::Enable { job } => {
            let found: Job =
                client.post(&format!("/jobs/{}/enabled", segment(&job)), &JobEnable { enabled: true }).await?;
            Ok(render_job(&found))
        }
        JobsCommand::Disable { job } => {
            let found: Job =
                client.post(&format!("/jobs/{}/enabled", segment(&job)), &JobEnable { enabled: false }).await?;
            Ok(render_job(&found))
        }
    }
}
