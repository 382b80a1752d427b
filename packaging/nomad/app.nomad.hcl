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
# AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...). On EC2 clients an
# instance profile needs no keys at all: drop the two template blocks and
# walship takes the role's keys from the instance metadata (IMDSv2; set the
# hop limit to 2 for Docker's bridge network), refreshing them before they
# expire.
#
# Spot clients: constrain the group to them with the node's own attribute
# or metadata (for example constraint { attribute = "${meta.capacity}"
# value = "spot" }); the replicate sidecar watches the cloud's preemption
# notice there (below).
#
# Needs Nomad 1.4 or later: Nomad variables (nomadVar) and checks on
# Nomad-native services (provider = "nomad") arrived in 1.4.
#
# The cloud's own notice: --preemption-notice auto (the default, spelled out)
# watches the node's metadata service (AWS two minutes ahead, GCE 30 s,
# Azure Scheduled Events) and, once a notice is posted, ships every 100 ms
# until the stop, so a node that dies before its SIGTERM loses at most that.
# Add --on-notice CMD to run a drain or a webhook once on the notice.
# Off the clouds it sends no request.
#
# The 30 s notice: when the node is drained or preempted, Nomad stops the
# app task first (kill_timeout 20 s: make the app's own shutdown fit in
# it) and the replicate sidecar after the app has exited (kill_timeout
# 10 s), in which walship ships what the app committed (one ship, normally
# well under a second) and exits 0. 20 s + 10 s is the 30 s a spot or
# preemptible node is given; keep the client's max_kill_timeout at 30 s or
# more.
#
# The service check asks replicate's --http listener for /healthz, which
# answers while walship is alive; /readyz (ready once restored and within
# --max-lag) is there for load balancers.
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

    # replicate's --http listener (/metrics, /healthz, /readyz).
    network {
      port "walship" {
        to = 9090
      }
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
        args  = ["restore", "--if-replica-exists", "--fast-forward", "--delta", "-o", "/alloc/data/app.db",
                 "s3://backups/app"]
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
      kill_timeout = "20s"
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
        args  = ["replicate", "--wait", "--enable-wal", "--http", "0.0.0.0:9090", "--preemption-notice", "auto", "/alloc/data/app.db", "s3://backups/app"]
        ports = ["walship"]
      }
      kill_signal  = "SIGTERM"
      kill_timeout = "10s"
      service {
        name     = "app-walship"
        provider = "nomad"
        port     = "walship"
        check {
          type     = "http"
          path     = "/healthz"
          interval = "10s"
          timeout  = "2s"
        }
      }
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
