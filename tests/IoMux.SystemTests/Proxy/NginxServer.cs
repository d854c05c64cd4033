using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace IoMux.Tests.Proxy;

/// <summary>A real nginx (the Debian package, installed here when missing) on a loopback port, with a config this
/// class writes: static files from <see cref="Root"/>, and WebDAV PUT under /upload/ so uploads land on disk where
/// a test can checksum them.</summary>
internal sealed partial class NginxServer : IDisposable
{
    private readonly Process _process;
    private readonly string _directory;

    public int Port { get; }

    public string Root => Path.Combine(_directory, "www");

    public string Target => $"127.0.0.1:{Port}";

    private NginxServer(string directory, int port, Process process)
    {
        _directory = directory;
        Port = port;
        _process = process;
    }

    public static string EnsureInstalled()
    {
        // A missing tool is a reason to skip, said as such, not a failure of IoMux (.ci/run installs it as root).
        var nginx = TryInstall(out string whyNot);
        if (nginx is null)
            Assert.Ignore(whyNot);
        return nginx!;
    }

    /// <summary>The nginx binary, installed with apt-get when missing and this user is root; null (and why) when
    /// that cannot be done, for tests whose nginx column is a comparison they can do without.</summary>
    public static string? TryInstall(out string whyNot)
    {
        whyNot = "";
        foreach (var candidate in new[] { "/usr/sbin/nginx", "/usr/bin/nginx" })
            if (File.Exists(candidate))
                return candidate;
        if (geteuid() != 0)
        {
            whyNot = "nginx is not installed and this user cannot install it (apt-get install nginx)";
            return null;
        }
        using var install = Process.Start("bash", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx"])!;
        if (!install.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            install.Kill(entireProcessTree: true);
            whyNot = "apt-get install nginx did not finish within 10 minutes";
            return null;
        }
        if (install.ExitCode != 0 || !File.Exists("/usr/sbin/nginx"))
        {
            whyNot = $"apt-get install nginx failed (exit code {install.ExitCode})";
            return null;
        }
        return "/usr/sbin/nginx";
    }

    /// <summary>nginx serving <paramref name="root"/> (default: a www directory of its own with an index.html).</summary>
    public static NginxServer Start(string? root = null)
    {
        var server = TryStart(EnsureInstalled(), root, out string whyNot);
        if (server is null)
            Assert.Fail(whyNot);
        return server!;
    }

    /// <summary>Starts <paramref name="nginx"/> serving <paramref name="root"/>; null (and why) when it does not
    /// accept connections within 20 s. <paramref name="serverDirectives"/> go into the server block (timeouts).</summary>
    public static NginxServer? TryStart(string nginx, string? root, out string whyNot, string serverDirectives = "")
    {
        whyNot = "";
        var directory = Directory.CreateTempSubdirectory("iomux-nginx-").FullName;
        Directory.CreateDirectory(Path.Combine(directory, "www", "upload"));
        Directory.CreateDirectory(Path.Combine(directory, "body"));
        File.WriteAllText(Path.Combine(directory, "www", "index.html"), "<html><body>IoMux proxy test page</body></html>\n");
        int port = ProxyProcess.FreePort();
        string user = geteuid() == 0 ? "user root;" : "";
        File.WriteAllText(Path.Combine(directory, "nginx.conf"), $$"""
            daemon off;
            master_process on;
            worker_processes 1;
            {{user}}
            pid {{directory}}/nginx.pid;
            error_log {{directory}}/error.log;
            events { worker_connections 4096; }
            http {
                access_log off;
                client_body_temp_path {{directory}}/body;
                server {
                    listen 127.0.0.1:{{port}} backlog=4096;
                    root {{root ?? $"{directory}/www"}};
                    keepalive_requests 100000;
                    {{serverDirectives}}
                    location /upload/ {
                        dav_methods PUT;
                        create_full_put_path on;
                        client_max_body_size 200m;
                    }
                }
            }
            """);
        var start = new ProcessStartInfo(nginx) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var argument in new[] { "-p", directory, "-c", Path.Combine(directory, "nginx.conf"), "-e", Path.Combine(directory, "error.log") })
            start.ArgumentList.Add(argument);
        var process = Process.Start(start)!;
        var server = new NginxServer(directory, port, process);
        if (!ProxyProcess.Eventually(server.Accepts, TimeSpan.FromSeconds(20)))
        {
            string log = File.Exists(Path.Combine(directory, "error.log")) ? File.ReadAllText(Path.Combine(directory, "error.log")) : "";
            server.Dispose();
            whyNot = $"nginx did not start: {log}";
            return null;
        }
        return server;
    }

    private bool Accepts()
    {
        try
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            probe.Connect(new IPEndPoint(IPAddress.Loopback, Port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    [LibraryImport("libc")]
    private static partial int geteuid();

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            TestProcesses.Signal(_process.Id, 15); // SIGTERM: the master stops its workers
            if (!_process.WaitForExit(10_000))
                _process.Kill(entireProcessTree: true);
        }
        _process.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}
