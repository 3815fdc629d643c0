"""DBNet parts: timm encoder, FPN decoder, DB head, DB loss, and their assembly."""
