-- non_detection: an upper limit, the object observed but not detected (class NonDetection).
CREATE TABLE IF NOT EXISTS non_detection (
    oid character varying NOT NULL,
    fid integer NOT NULL,
    mjd double precision NOT NULL,
    diffmaglim double precision,
    CONSTRAINT non_detection_pkey PRIMARY KEY (oid, fid, mjd),
    CONSTRAINT non_detection_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_non_detection_oid ON non_detection USING hash (oid);
