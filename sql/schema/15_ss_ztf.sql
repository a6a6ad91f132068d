-- ss_ztf: the nearest known solar-system object, from the ZTF alert (class Ss_ztf).
CREATE TABLE IF NOT EXISTS ss_ztf (
    oid character varying NOT NULL,
    candid bigint NOT NULL,
    ssdistnr double precision,
    ssmagnr double precision,
    ssnamenr character varying,
    CONSTRAINT ss_ztf_pkey PRIMARY KEY (oid),
    CONSTRAINT ss_ztf_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_ss_ztf_candid ON ss_ztf USING btree (candid);
CREATE INDEX IF NOT EXISTS ix_ss_ztf_ssnamenr ON ss_ztf USING btree (ssnamenr);
