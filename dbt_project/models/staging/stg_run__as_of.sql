-- The instant of the last dbt build of staging: the dbt var `as_of` (CONSENT_NOW, else the real
-- now when the run started; macros/as_of.sql). One row. Form validation reads it for its "in the
-- future" and "too young" rules (expectations/rules.py), so they judge a record at the run's
-- instant, as golden_consent and the reports do, never at the database's now().
select {{ as_of() }} as as_of
