-- The stored form of the defaults and index predicates of the temporary _dbp_canon_<n> tables that
-- introspect.canonicalize() creates (inside a transaction it rolls back).
SELECT c.relname, 'd', a.attname, pg_get_expr(d.adbin, d.adrelid)
FROM pg_attrdef d
JOIN pg_class c ON c.oid = d.adrelid
JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE c.relname LIKE '\_dbp\_canon\_%' AND c.relpersistence = 't' AND c.relnamespace = pg_my_temp_schema()
UNION ALL
SELECT t.relname, 'i', i.relname, pg_get_expr(ix.indpred, ix.indrelid)
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
WHERE t.relname LIKE '\_dbp\_canon\_%' AND t.relnamespace = pg_my_temp_schema() AND ix.indpred IS NOT NULL
