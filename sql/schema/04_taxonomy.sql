-- taxonomy: the classes a classifier version can assign (class Taxonomy).
CREATE TABLE IF NOT EXISTS taxonomy (
    classifier_name character varying NOT NULL,
    classifier_version character varying NOT NULL,
    classes character varying[] NOT NULL,
    CONSTRAINT taxonomy_pkey PRIMARY KEY (classifier_name, classifier_version)
);
