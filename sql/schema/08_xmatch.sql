-- xmatch: a cross-match of an object with an external catalog (class Xmatch).
CREATE TABLE IF NOT EXISTS xmatch (
    oid character varying NOT NULL,
    catid character varying NOT NULL,
    oid_catalog character varying NOT NULL,
    dist double precision NOT NULL,
    class_catalog character varying,
    period double precision,
    CONSTRAINT xmatch_pkey PRIMARY KEY (oid, catid),
    CONSTRAINT xmatch_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);
