-- Every ordinary or partitioned table of one schema with its columns, in column order: one row per column
-- (a table without columns still gives one row, with NULL column fields).
-- Types come from format_type(), so they read as PostgreSQL prints them ("character varying(10)",
-- "timestamp without time zone", "double precision[]"); defaults from pg_get_expr().
-- owns_sequence: the default is nextval() of a sequence owned by the column (what serial types create, and
-- ALTER SEQUENCE ... OWNED BY); the identity sequence is an internal dependency ('i'), not this one ('a').
-- seq*: the options of an identity column's sequence (NULL for any other column).
SELECT c.relname                               AS table_name,
       a.attname                               AS column_name,
       format_type(a.atttypid, a.atttypmod)    AS sql_type,
       NOT a.attnotnull                        AS nullable,
       pg_get_expr(d.adbin, d.adrelid)         AS default_expr,
       a.attidentity                           AS identity,
       a.attgenerated                          AS generated,
       EXISTS (SELECT 1
               FROM pg_depend dep
               JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
               WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
                 AND dep.refobjid = c.oid AND dep.refobjsubid = a.attnum AND dep.deptype = 'a'
                 AND pg_get_expr(d.adbin, d.adrelid) = format('nextval(%%L::regclass)', s.oid::regclass::text))
                                               AS owns_sequence,
       s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache, s.seqcycle
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
-- an identity column's own sequence (an internal dependency of the column), for its options
LEFT JOIN (pg_depend i JOIN pg_sequence s ON s.seqrelid = i.objid)
       ON a.attidentity <> '' AND i.classid = 'pg_class'::regclass AND i.refclassid = 'pg_class'::regclass
      AND i.refobjid = c.oid AND i.refobjsubid = a.attnum AND i.deptype = 'i'
WHERE n.nspname = %(schema)s
  AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND NOT (c.relname = ANY (%(excluded)s))
  AND NOT (c.relname LIKE ANY (%(excluded_like)s))
ORDER BY c.relname, a.attnum
