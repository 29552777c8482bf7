-- Event action plans, maintenance windows and deliveries (one action of a plan carried out for one event).

-- The system an event is about, when it is about one.
ALTER TABLE events ADD COLUMN system_id TEXT;

-- `data` is the plan as stored, secrets included (the API never returns them).
CREATE TABLE event_action_plans (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    data        TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE maintenance_windows (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    data        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- state: pending, retrying, delivered, gave_up, suppressed; kind: event, flapping. `action` and `payload` are
-- snapshots taken when the delivery was recorded (the action as it was, secrets included; the event), so a
-- delivery carries out what matched even if the plan changes or the event is pruned.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    plan_id          TEXT NOT NULL REFERENCES event_action_plans (id) ON DELETE CASCADE,
    action_index     INTEGER NOT NULL,
    action           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    source           TEXT NOT NULL,
    message          TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    duplicates       INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    last_error       TEXT,
    suppressed_by    TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state IN ('pending', 'retrying');
CREATE INDEX deliveries_plan ON deliveries (plan_id, created_at);
CREATE INDEX deliveries_created ON deliveries (created_at);
CREATE INDEX deliveries_event ON deliveries (plan_id, event_id);

-- Repeat control per plan, event type and source: `state` is the JSON the server keeps (recent event times, the
-- duplicate window, whether it is flapping).
CREATE TABLE delivery_throttles (
    plan_id     TEXT NOT NULL REFERENCES event_action_plans (id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL,
    source_key  TEXT NOT NULL,
    state       TEXT NOT NULL,
    PRIMARY KEY (plan_id, event_type, source_key)
);
