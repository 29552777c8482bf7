-- Hosts, networks, templates, virtual servers, and the operations (sagas) that change them.
-- Resources whose shape is a nested document keep it as JSON in `data` beside the columns that are looked up.

CREATE TABLE hosts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE networks (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    host_id     TEXT NOT NULL REFERENCES hosts (id),
    subnet      TEXT,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

CREATE TABLE server_templates (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- state: 'creating' while the import or capture that makes it runs, then 'ready'.
CREATE TABLE os_templates (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    host_id     TEXT NOT NULL REFERENCES hosts (id),
    state       TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- state: 'creating', 'ready' or 'deleting'.
CREATE TABLE virtual_servers (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    host_id             TEXT NOT NULL REFERENCES hosts (id),
    server_template_id  TEXT,
    os_template_id      TEXT,
    system_id           TEXT,
    state               TEXT NOT NULL,
    data                TEXT NOT NULL,
    created_at          INTEGER NOT NULL
);
CREATE INDEX virtual_servers_host ON virtual_servers (host_id);

CREATE TABLE virtual_server_nics (
    virtual_server_id  TEXT NOT NULL REFERENCES virtual_servers (id) ON DELETE CASCADE,
    position           INTEGER NOT NULL,
    network_id         TEXT NOT NULL REFERENCES networks (id),
    mac                TEXT NOT NULL UNIQUE,
    PRIMARY KEY (virtual_server_id, position)
);
CREATE INDEX virtual_server_nics_network ON virtual_server_nics (network_id);

CREATE TABLE operations (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    target_kind  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    target_name  TEXT NOT NULL,
    state        TEXT NOT NULL,
    params       TEXT NOT NULL,
    error        TEXT,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX operations_target ON operations (target_id, state);
CREATE INDEX operations_state ON operations (state);

CREATE TABLE operation_steps (
    operation_id  TEXT NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    name          TEXT NOT NULL,
    state         TEXT NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    detail        TEXT,
    PRIMARY KEY (operation_id, position)
);
