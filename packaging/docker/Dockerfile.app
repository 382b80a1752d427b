# An app image that restores its database on every start and then runs under
# walship (entrypoint.sh): the pattern for nodes that can vanish at any time.
#
#   docker build -f packaging/docker/Dockerfile -t walship build-static/dist
#   docker build -f packaging/docker/Dockerfile.app -t myapp packaging/docker
#   docker run -e WALSHIP_DB=/data/app.db -e WALSHIP_REPLICA=s3://backups/app \
#     -e AWS_ACCESS_KEY_ID=... -e AWS_SECRET_ACCESS_KEY=... myapp myapp serve
#
# Replace the base image and the app with your own.
FROM walship AS walship

FROM debian:bookworm-slim
COPY --from=walship /usr/bin/walship /usr/bin/walship
COPY entrypoint.sh /usr/local/bin/walship-entrypoint
# COPY myapp /usr/local/bin/myapp
VOLUME /data
# walship forwards SIGTERM to the app and ships the last transactions after
# it exits: give the container the grace time to do so (docker stop -t 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/walship-entrypoint"]
