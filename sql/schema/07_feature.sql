-- feature: one feature value of an object in one band (class Feature).
-- The FK on version is feature_version_fkey, PostgreSQL's default name for feature(version).
CREATE TABLE IF NOT EXISTS feature (
    oid character varying NOT NULL,
    name character varying NOT NULL,
    value double precision,
    fid integer NOT NULL,
    version character varying NOT NULL,
    CONSTRAINT feature_pkey PRIMARY KEY (oid, name, fid, version),
    CONSTRAINT feature_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid),
    CONSTRAINT feature_version_fkey FOREIGN KEY (version) REFERENCES feature_version (version)
);

CREATE INDEX IF NOT EXISTS ix_feature_oid_2 ON feature USING hash (oid);
