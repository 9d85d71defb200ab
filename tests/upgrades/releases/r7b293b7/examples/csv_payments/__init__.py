"""The CSV payments reference pipeline: a payments file in S3 becomes one provider call per row.

:mod:`examples.csv_payments.records` holds its pure building blocks (parsing, validation, the
provider mock's decision rule, the output file); it makes no AWS calls.
"""
