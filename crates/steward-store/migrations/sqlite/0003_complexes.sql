-- Server complexes, their members, the deviations the last check found, events, and child operations.

CREATE TABLE complexes (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    host_id          TEXT NOT NULL REFERENCES hosts (id),
    data             TEXT NOT NULL,
    last_checked_at  INTEGER,
    created_at       INTEGER NOT NULL
);

-- A member is a virtual server; removing the virtual server removes the membership.
-- adopted: JSON object property -> value taken over from reality for this member.
CREATE TABLE complex_members (
    virtual_server_id  TEXT PRIMARY KEY REFERENCES virtual_servers (id) ON DELETE CASCADE,
    complex_id         TEXT NOT NULL REFERENCES complexes (id),
    tier               TEXT NOT NULL,
    member_index       INTEGER NOT NULL,
    adopted            TEXT NOT NULL DEFAULT '{}',
    UNIQUE (complex_id, tier, member_index)
);
CREATE INDEX complex_members_complex ON complex_members (complex_id);

-- The static address a NIC holds (without prefix): unique per network, so address pools never hand one out twice.
ALTER TABLE virtual_server_nics ADD COLUMN address TEXT;
CREATE UNIQUE INDEX virtual_server_nics_address ON virtual_server_nics (network_id, address) WHERE address IS NOT NULL;

CREATE TABLE complex_deviations (
    complex_id  TEXT NOT NULL REFERENCES complexes (id) ON DELETE CASCADE,
    member      TEXT NOT NULL,
    property    TEXT NOT NULL,
    layer       TEXT NOT NULL,
    expected    TEXT NOT NULL,
    actual      TEXT NOT NULL,
    first_seen  INTEGER NOT NULL,
    PRIMARY KEY (complex_id, member, property)
);

CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    source_kind  TEXT NOT NULL,
    source_id    TEXT NOT NULL,
    source_name  TEXT NOT NULL,
    message      TEXT NOT NULL,
    details      TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX events_created ON events (created_at);
CREATE INDEX events_type ON events (type, created_at);

-- An operation started by another (each member of a complex operation): driven by its parent, not resumed alone.
ALTER TABLE operations ADD COLUMN parent_id TEXT REFERENCES operations (id);
CREATE INDEX operations_parent ON operations (parent_id);
