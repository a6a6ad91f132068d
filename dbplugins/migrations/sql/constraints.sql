-- Primary key, unique and foreign key constraints of one schema's tables, with their column lists in key order.
-- The correlated ARRAY() subqueries keep this one round trip whatever the number of tables.
SELECT c.relname                                AS table_name,
       con.conname                              AS name,
       con.contype                              AS kind,
       ARRAY(SELECT a.attname
             FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord)                    AS columns,
       rc.relname                               AS ref_table,
       ARRAY(SELECT a.attname
             FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord)                    AS ref_columns
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class rc ON rc.oid = con.confrelid
WHERE n.nspname = %(schema)s
  AND con.contype IN ('p', 'u', 'f')
  AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND NOT (c.relname = ANY (%(excluded)s))
  AND NOT (c.relname LIKE ANY (%(excluded_like)s))
ORDER BY c.relname, con.contype, con.conname
