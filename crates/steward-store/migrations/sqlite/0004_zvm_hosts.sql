-- z/VM hosts are registered through the API: how to reach them (a JSON document, never the password) and the
-- SMAPI user's password, which only the server reads (to open the connection) and the API never returns.
ALTER TABLE hosts ADD COLUMN settings TEXT;
ALTER TABLE hosts ADD COLUMN secret TEXT;
