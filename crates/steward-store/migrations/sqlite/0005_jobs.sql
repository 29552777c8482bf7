-- Scheduled jobs. `data` is the job's definition as the API shows it (task, target, schedule, missed-run policy,
-- concurrency); `next_run_at` is when the scheduler runs it next (NULL: not by itself).
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    data         TEXT NOT NULL,
    enabled      INTEGER NOT NULL,
    next_run_at  INTEGER,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (next_run_at) WHERE next_run_at IS NOT NULL;

-- state: running, succeeded, partial, failed, skipped, interrupted; trigger: schedule, manual, missed.
CREATE TABLE job_runs (
    id             TEXT PRIMARY KEY,
    job_id         TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    trigger        TEXT NOT NULL,
    scheduled_for  INTEGER,
    state          TEXT NOT NULL,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER
);
CREATE INDEX job_runs_job ON job_runs (job_id, started_at);
CREATE INDEX job_runs_state ON job_runs (state);

-- state: running, succeeded, failed.
CREATE TABLE job_run_targets (
    run_id       TEXT NOT NULL REFERENCES job_runs (id) ON DELETE CASCADE,
    system_id    TEXT NOT NULL,
    system_name  TEXT NOT NULL,
    state        TEXT NOT NULL,
    exit_code    INTEGER,
    error        TEXT,
    stdout       TEXT NOT NULL DEFAULT '',
    stderr       TEXT NOT NULL DEFAULT '',
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    PRIMARY KEY (run_id, system_id)
);
