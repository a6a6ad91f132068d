-- Every ordinary or partitioned table of one schema with its columns, in column order: one row per column
-- (a table without columns still gives one row, with NULL column fields).
-- Types come from format_type(), so they read as PostgreSQL prints them ("character varying(10)",
-- "timestamp without time zone", "double precision[]"); defaults from pg_get_expr().
SELECT c.relname                               AS table_name,
       a.attname                               AS column_name,
       format_type(a.atttypid, a.atttypmod)    AS sql_type,
       NOT a.attnotnull                        AS nullable,
       pg_get_expr(d.adbin, d.adrelid)         AS default_expr,
       a.attidentity                           AS identity,
       a.attgenerated                          AS generated
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = %(schema)s
  AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND NOT (c.relname = ANY (%(excluded)s))
  AND NOT (c.relname LIKE ANY (%(excluded_like)s))
ORDER BY c.relname, a.attnum
