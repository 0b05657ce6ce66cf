-- Subject search (`GET /messages/outbound?subject=`) is a substring match: a trigram index answers it
-- at a million messages (issue 4) where a scan took 2 s. The store writes a row here with each
-- message (`Store.subject_index`); its own copy of the subject and message id, not an external-content
-- table, because an external-content index follows the implicit rowid, which VACUUM may renumber.
-- detail=none: LIKE needs only which rows hold a trigram, not where.
CREATE VIRTUAL TABLE message_subjects USING fts5(subject, message_id UNINDEXED, tokenize = 'trigram', detail = 'none');
INSERT INTO message_subjects (subject, message_id) SELECT subject, message_id FROM messages;
