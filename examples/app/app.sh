#!/bin/sh
# Serves /srv/www on port 8080 in the foreground; cgi-bin/greet answers "Hello, NAME".
exec httpd -f -p 8080 -h /srv/www
