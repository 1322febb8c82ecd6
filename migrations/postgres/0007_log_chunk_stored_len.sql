-- Each log chunk's length in bytes as stored (after the coordinator masked it), so that the dashboard's job page
-- (each step's log size) and its log pages (which chunks overlap a byte range) read two integers a chunk instead
-- of every chunk's text: a 100,000-line log is megabytes of text, and PostgreSQL must also de-TOAST each value to
-- measure it. NULL only for rows a coordinator without this column wrote during an upgrade: readers fall back to
-- measuring the text. Keep in step with migrations/sqlite/0007_log_chunk_stored_len.sql.
ALTER TABLE log_chunks ADD COLUMN stored_len BIGINT;
UPDATE log_chunks SET stored_len = OCTET_LENGTH(data);
