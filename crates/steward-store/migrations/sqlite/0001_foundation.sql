-- Foundation: users, tokens, enrollment, systems with inventory, groups, audit.
-- Times are Unix milliseconds (INTEGER); IDs are UUID text; JSON documents are TEXT.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'administrator')),
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    UNIQUE (user_id, name)
);

CREATE TABLE enrollment_tokens (
    id           TEXT PRIMARY KEY,
    secret_hash  TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    description  TEXT NOT NULL,
    uses         INTEGER NOT NULL CHECK (uses >= 1),
    used         INTEGER NOT NULL DEFAULT 0 CHECK (used <= uses),
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);

CREATE TABLE systems (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    hostname              TEXT NOT NULL,
    os                    TEXT NOT NULL DEFAULT '',
    arch                  TEXT NOT NULL DEFAULT '',
    agent_version         TEXT NOT NULL,
    online                INTEGER NOT NULL DEFAULT 0,
    enrolled_at           INTEGER NOT NULL,
    last_contact_at       INTEGER,
    inventory             TEXT,
    inventory_digest      TEXT,
    inventory_updated_at  INTEGER
);

-- Certificates outlive their system: a deleted system's certificate stays here, revoked.
CREATE TABLE agent_certificates (
    serial      TEXT PRIMARY KEY,
    system_id   TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX agent_certificates_system ON agent_certificates (system_id);

CREATE TABLE inventory_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    system_id  TEXT NOT NULL REFERENCES systems (id) ON DELETE CASCADE,
    at         INTEGER NOT NULL,
    sections   TEXT NOT NULL,
    change     TEXT NOT NULL
);
CREATE INDEX inventory_history_system ON inventory_history (system_id, id);

CREATE TABLE system_groups (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL CHECK (kind IN ('static', 'dynamic')),
    description  TEXT NOT NULL,
    query        TEXT,
    created_at   INTEGER NOT NULL
);

CREATE TABLE group_members (
    group_id   TEXT NOT NULL REFERENCES system_groups (id) ON DELETE CASCADE,
    system_id  TEXT NOT NULL REFERENCES systems (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, system_id)
);
CREATE INDEX group_members_system ON group_members (system_id);

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    details  TEXT NOT NULL
);
