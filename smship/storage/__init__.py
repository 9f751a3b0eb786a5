"""S3 uploads: the bucket (from the machine running smship) and the app hosts' settings."""
