"""The archive service: retention deadlines of records, fed by the records feed."""
