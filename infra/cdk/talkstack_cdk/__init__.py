"""The talkstack CDK app: `app.py` builds `TalkstackStack` from `DeploySettings`."""
