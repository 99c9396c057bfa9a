from expc.cli import app

app()
