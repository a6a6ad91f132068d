-- probability: the probability that an object belongs to a class, by classifier (class Probability).
-- ix_classification_rank1 is a partial index over the top-ranked class only.
CREATE TABLE IF NOT EXISTS probability (
    oid character varying NOT NULL,
    class_name character varying NOT NULL,
    classifier_name character varying NOT NULL,
    classifier_version character varying NOT NULL,
    probability double precision NOT NULL,
    ranking integer NOT NULL,
    CONSTRAINT probability_pkey PRIMARY KEY (oid, class_name, classifier_name, classifier_version),
    CONSTRAINT probability_oid_fkey FOREIGN KEY (oid) REFERENCES object (oid)
);

CREATE INDEX IF NOT EXISTS ix_probabilities_oid ON probability USING hash (oid);
CREATE INDEX IF NOT EXISTS ix_probabilities_probability ON probability USING btree (probability);
CREATE INDEX IF NOT EXISTS ix_probabilities_ranking ON probability USING btree (ranking);
CREATE INDEX IF NOT EXISTS ix_classification_rank1 ON probability USING btree (ranking) WHERE ranking = 1;
