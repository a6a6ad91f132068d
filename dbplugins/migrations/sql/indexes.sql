-- Indexes of one schema's tables that do not belong to a constraint (primary key and unique constraints are read
-- by constraints.sql), as structure rather than text: PostgreSQL rewrites index definitions, so the differ
-- compares access method, key columns, uniqueness and predicate (as schemainspect's InspectedIndex does).
-- pg_get_indexdef(oid, k, true) gives key k alone: a column name, or an expression; indoption bits 0 and 1 are
-- DESC and NULLS FIRST.
SELECT t.relname                                 AS table_name,
       i.relname                                 AS name,
       am.amname                                 AS method,
       ix.indisunique                            AS is_unique,
       pg_get_expr(ix.indpred, ix.indrelid)      AS predicate,
       ARRAY(SELECT pg_get_indexdef(ix.indexrelid, k, true)
                    || CASE WHEN ix.indoption[k - 1] & 1 = 1 THEN ' DESC' ELSE '' END
                    || CASE WHEN ix.indoption[k - 1] & 3 = 1 THEN ' NULLS LAST'
                            WHEN ix.indoption[k - 1] & 3 = 2 THEN ' NULLS FIRST' ELSE '' END
             FROM generate_series(1, ix.indnkeyatts) AS k
             ORDER BY k)                         AS columns,
       pg_get_indexdef(ix.indexrelid)            AS definition
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = i.relam
WHERE n.nspname = %(schema)s
  AND t.relkind IN ('r', 'p')
  AND NOT t.relispartition
  AND NOT (t.relname = ANY (%(excluded)s))
  AND NOT (t.relname LIKE ANY (%(excluded_like)s))
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con
                  WHERE con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid AND con.contype IN ('p', 'u', 'x'))
ORDER BY t.relname, i.relname
