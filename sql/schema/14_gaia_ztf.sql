-- gaia_ztf: the nearest Gaia sources of an object, from its ZTF alert (class Gaia_ztf).
CREATE TABLE IF NOT EXISTS gaia_ztf (
    oid character varying NOT NULL,
    candid bigint NOT NULL,
    neargaia double precision,
    neargaiabright double precision,
    maggaia double precision,
    maggaiabright double precision,
    unique1 boolean NOT NULL,
    CONSTRAINT gaia_ztf_pkey PRIMARY KEY (oid),
    CONSTRAINT gaia_ztf_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);
