"""Data: the competition layout (annotations, dataset, datamodule), transforms, synthetic receipts."""
