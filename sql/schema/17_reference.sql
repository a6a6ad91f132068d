-- reference: the reference image of an object in one band (class Reference).
CREATE TABLE IF NOT EXISTS reference (
    oid character varying NOT NULL,
    rfid bigint NOT NULL,
    candid bigint NOT NULL,
    fid integer NOT NULL,
    rcid integer,
    field integer,
    magnr double precision,
    sigmagnr double precision,
    chinr double precision,
    sharpnr double precision,
    ranr double precision NOT NULL,
    decnr double precision NOT NULL,
    mjdstartref double precision NOT NULL,
    mjdendref double precision NOT NULL,
    nframesref integer NOT NULL,
    CONSTRAINT reference_pkey PRIMARY KEY (oid, rfid),
    CONSTRAINT reference_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_reference_fid ON reference USING btree (fid);
