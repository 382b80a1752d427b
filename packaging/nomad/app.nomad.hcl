# The preemptible-node pattern on Nomad: the database lives on the node's
# local disk (the allocation folder), walship restores it before the app
# starts and replicates every transaction while it runs. When the node
# vanishes, Nomad reschedules the group elsewhere, without limit, and the
# prestart task restores the last shipped transaction there.
#
#   nomad job run app.nomad.hcl
#
# The very first start has no replica and no database: the sidecar's --wait
# makes it replicate the database from the moment the app creates it (in WAL
# mode).
#
# Replace the app task, the bucket and the image tags with your own; the
# credentials come from Nomad variables (nomad var put nomad/jobs/app
# AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...).
job "app" {
  type = "service"

  group "app" {
    # One writer per replica, always: two would fight over the same prefix.
    count = 1

    # A lost node is a normal event: try again forever, quickly.
    reschedule {
      unlimited      = true
      delay          = "5s"
      delay_function = "constant"
    }

    restart {
      attempts = 3
      interval = "1m"
      delay    = "2s"
      mode     = "fail"
    }

    # Restore the latest point, unless there is no replica yet (first run).
    task "restore" {
      lifecycle {
        hook    = "prestart"
        sidecar = false
      }
      driver = "docker"
      config {
        image = "walship:0.1.0"
        args  = ["restore", "--if-replica-exists", "--if-db-not-exists", "-o", "/alloc/data/app.db", "s3://backups/app"]
      }
      template {
        data        = "{{ with nomadVar \"nomad/jobs/app\" }}AWS_ACCESS_KEY_ID={{ .AWS_ACCESS_KEY_ID }}\nAWS_SECRET_ACCESS_KEY={{ .AWS_SECRET_ACCESS_KEY }}{{ end }}\n"
        destination = "secrets/aws.env"
        env         = true
      }
      env {
        AWS_REGION = "eu-west-1"
      }
      resources {
        cpu    = 200
        memory = 128
      }
    }

    task "app" {
      driver = "docker"
      config {
        image = "myapp:latest"
        args  = ["serve", "--db", "/alloc/data/app.db"]
      }
      resources {
        cpu    = 500
        memory = 256
      }
    }

    # Ships every committed transaction while the app runs. Sidecars stop
    # after the main task: on SIGTERM walship ships what is committed and exits.
    task "replicate" {
      lifecycle {
        hook    = "poststart"
        sidecar = true
      }
      driver = "docker"
      config {
        image = "walship:0.1.0"
        args  = ["replicate", "--wait", "/alloc/data/app.db", "s3://backups/app"]
      }
      kill_signal  = "SIGTERM"
      kill_timeout = "25s"
      # Back on its feet after a crash; nothing is lost meanwhile (it resumes).
      restart {
        attempts = 30
        interval = "5m"
        delay    = "2s"
        mode     = "delay"
      }
      template {
        data        = "{{ with nomadVar \"nomad/jobs/app\" }}AWS_ACCESS_KEY_ID={{ .AWS_ACCESS_KEY_ID }}\nAWS_SECRET_ACCESS_KEY={{ .AWS_SECRET_ACCESS_KEY }}{{ end }}\n"
        destination = "secrets/aws.env"
        env         = true
      }
      env {
        AWS_REGION = "eu-west-1"
      }
      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
