-- The package repository: `data` is the package as the API shows it; the file is DATA/packages/<sha256>.<format>.
-- A package is unique by format, name, version and architecture (a build stores a .deb and an .rpm of one name).
CREATE TABLE packages (
    id            TEXT PRIMARY KEY,
    format        TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    architecture  TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    data          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (format, name, version, architecture)
);
CREATE INDEX packages_sha256 ON packages (sha256);
