-- Resource monitors: `data` is the definition as the API shows it.
CREATE TABLE monitors (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- A monitor's state on one system: ok, pending (the condition holds, not yet for the hold time) or raised.
CREATE TABLE monitor_states (
    monitor_id      TEXT NOT NULL REFERENCES monitors (id) ON DELETE CASCADE,
    system_id       TEXT NOT NULL,
    state           TEXT NOT NULL,
    since           INTEGER NOT NULL,
    last_value      REAL,
    last_sample_at  INTEGER,
    PRIMARY KEY (monitor_id, system_id)
);

-- Raw samples, kept for the raw retention (a day by default), then only as 5-minute buckets.
CREATE TABLE samples (
    system_id  TEXT NOT NULL,
    metric     TEXT NOT NULL,
    at         INTEGER NOT NULL,
    value      REAL NOT NULL
);
CREATE INDEX samples_series ON samples (system_id, metric, at);
CREATE INDEX samples_at ON samples (at);

CREATE TABLE samples_5m (
    system_id  TEXT NOT NULL,
    metric     TEXT NOT NULL,
    bucket     INTEGER NOT NULL,
    min        REAL NOT NULL,
    max        REAL NOT NULL,
    sum        REAL NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (system_id, metric, bucket)
);
CREATE INDEX samples_5m_bucket ON samples_5m (bucket);
