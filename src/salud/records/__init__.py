"""The shared health record: FHIR R4 resources that belong to the person, written by any
institution and read by whoever treats the person (issue 5)."""
