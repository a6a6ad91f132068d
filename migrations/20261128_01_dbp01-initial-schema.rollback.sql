-- Rollback of the initial built-in schema: drops every built-in table, dependants first.

DROP TABLE IF EXISTS reference;
DROP TABLE IF EXISTS ps1_ztf;
DROP TABLE IF EXISTS ss_ztf;
DROP TABLE IF EXISTS gaia_ztf;
DROP TABLE IF EXISTS dataquality;
DROP TABLE IF EXISTS detection;
DROP TABLE IF EXISTS non_detection;
DROP TABLE IF EXISTS magstat;
DROP TABLE IF EXISTS allwise;
DROP TABLE IF EXISTS xmatch;
DROP TABLE IF EXISTS feature;
DROP TABLE IF EXISTS feature_version;
DROP TABLE IF EXISTS probability;
DROP TABLE IF EXISTS taxonomy;
DROP TABLE IF EXISTS pipeline;
DROP TABLE IF EXISTS step;
DROP TABLE IF EXISTS object;
