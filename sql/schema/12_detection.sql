-- detection: one alert candidate of an object (class Detection).
-- pid is double precision, as the original created it (not bigint).
-- The index is spelled ix_ndetection_oid, the library's own name.
CREATE TABLE IF NOT EXISTS detection (
    candid bigint NOT NULL,
    oid character varying NOT NULL,
    mjd double precision NOT NULL,
    fid integer NOT NULL,
    pid double precision NOT NULL,
    diffmaglim double precision,
    isdiffpos integer NOT NULL,
    nid integer,
    ra double precision NOT NULL,
    dec double precision NOT NULL,
    magpsf double precision NOT NULL,
    sigmapsf double precision NOT NULL,
    magap double precision,
    sigmagap double precision,
    distnr double precision,
    rb double precision,
    rbversion character varying,
    drb double precision,
    drbversion character varying,
    magapbig double precision,
    sigmagapbig double precision,
    rfid integer,
    magpsf_corr double precision,
    sigmapsf_corr double precision,
    sigmapsf_corr_ext double precision,
    corrected boolean NOT NULL,
    dubious boolean NOT NULL,
    parent_candid bigint,
    has_stamp boolean NOT NULL,
    step_id_corr character varying NOT NULL,
    CONSTRAINT detection_pkey PRIMARY KEY (candid, oid),
    CONSTRAINT detection_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_ndetection_oid ON detection USING hash (oid);
