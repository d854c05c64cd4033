using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy.Configuration;

namespace IoMux.Tests.AspNetCore;

/// <summary>nginx on a loopback port as YARP's upstream: static files under its root, and POST /echo answering the
/// request body (stock nginx has no echo module: the body is read into one buffer for a proxied sub-request and
/// substituted into that sub-request's one-word answer by sub_filter).</summary>
internal sealed class NginxUpstream : IDisposable
{
    private readonly Process _process;
    private readonly string _directory;

    public int Port { get; }

    public string Root => Path.Combine(_directory, "www");

    private NginxUpstream(string directory, int port, Process process)
    {
        _directory = directory;
        Port = port;
        _process = process;
    }

    /// <summary>nginx, installed with apt-get when missing and this user is root; otherwise the test is skipped
    /// with the reason (a missing tool is not a failure of the transport).</summary>
    private static string Binary()
    {
        if (File.Exists("/usr/sbin/nginx"))
            return "/usr/sbin/nginx";
        if (Environment.UserName != "root")
            Assert.Ignore("nginx is not installed and this user cannot install it (apt-get install nginx)");
        using var install = Process.Start("bash", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx"])!;
        if (!install.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            install.Kill(entireProcessTree: true);
            Assert.Ignore("apt-get install nginx did not finish within 5 minutes");
        }
        if (!File.Exists("/usr/sbin/nginx"))
            Assert.Ignore($"apt-get install nginx failed (exit code {install.ExitCode})");
        return "/usr/sbin/nginx";
    }

    public static NginxUpstream Start()
    {
        string nginx = Binary();
        var directory = Directory.CreateTempSubdirectory("iomux-yarp-nginx-").FullName;
        Directory.CreateDirectory(Path.Combine(directory, "www"));
        Directory.CreateDirectory(Path.Combine(directory, "body"));
        int port;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        }
        string user = Environment.UserName == "root" ? "user root;" : "";
        File.WriteAllText(Path.Combine(directory, "nginx.conf"), $$"""
            daemon off;
            master_process off;
            worker_processes 1;
            {{user}}
            pid {{directory}}/nginx.pid;
            error_log {{directory}}/error.log;
            events { worker_connections 1024; }
            http {
                access_log off;
                client_body_temp_path {{directory}}/body;
                server {
                    listen 127.0.0.1:{{port}};
                    root {{directory}}/www;
                    keepalive_requests 100000;
                    location = /echo {
                        client_max_body_size 8m;
                        client_body_buffer_size 8m;
                        client_body_in_single_buffer on;
                        proxy_pass http://127.0.0.1:{{port}}/placeholder;
                        proxy_method GET;
                        proxy_pass_request_body off;
                        proxy_set_header Content-Length "";
                        proxy_set_header Accept-Encoding "";
                        sub_filter_types *;
                        sub_filter_once on;
                        sub_filter "@BODY@" $request_body;
                    }
                    location = /placeholder {
                        default_type application/octet-stream;
                        return 200 "@BODY@";
                    }
                }
            }
            """);
        var start = new ProcessStartInfo(nginx) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var argument in new[] { "-p", directory, "-c", Path.Combine(directory, "nginx.conf"), "-e", Path.Combine(directory, "error.log") })
            start.ArgumentList.Add(argument);
        var server = new NginxUpstream(directory, port, Process.Start(start)!);
        var clock = Stopwatch.StartNew();
        while (!server.Accepts())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(20))
            {
                string log = File.Exists(Path.Combine(directory, "error.log")) ? File.ReadAllText(Path.Combine(directory, "error.log")) : "";
                server.Dispose();
                Assert.Fail($"nginx did not accept connections within 20 s: {log}");
            }
            Thread.Sleep(50);
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

    public void Dispose()
    {
        // master_process off: the one process is the server; nothing else to reap.
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(10_000);
        }
        _process.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}

/// <summary>
/// YARP (Yarp.ReverseProxy, routes and cluster in code) on the transport, forwarding to nginx on loopback: GET and
/// POST bodies, up to 1 MiB and many at once, arrive byte for byte, from HTTP/1.1 and from h2c clients. The same
/// tests run with YARP on Kestrel's socket transport as the reference.
/// </summary>
[TestFixtureSource(typeof(ApplicationTargets), nameof(ApplicationTargets.All))]
[NonParallelizable]
public sealed class YarpTests(TransportTarget target)
{
    private NginxUpstream _nginx = null!;
    private byte[] _file = null!;

    [OneTimeSetUp]
    public void StartNginx()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
        _nginx = NginxUpstream.Start();
        _file = RandomNumberGenerator.GetBytes(1 << 20);
        File.WriteAllBytes(Path.Combine(_nginx.Root, "big.bin"), _file);
        File.WriteAllText(Path.Combine(_nginx.Root, "small.txt"), "served by nginx\n");
    }

    [OneTimeTearDown]
    public void StopNginx() => _nginx?.Dispose();

    /// <summary>YARP as its docs configure it in code: one catch-all route to one cluster, nginx.</summary>
    private Task<ApplicationHost> StartProxyAsync(HttpProtocols protocols) => ApplicationHost.StartAsync(target,
        ApplicationHost.Loopback(protocols),
        services => services.AddReverseProxy().LoadFromMemory(
            [new RouteConfig { RouteId = "all", ClusterId = "nginx", Match = new RouteMatch { Path = "{**catch-all}" } }],
            [new ClusterConfig
            {
                ClusterId = "nginx",
                Destinations = new Dictionary<string, DestinationConfig> { ["nginx"] = new() { Address = $"http://127.0.0.1:{_nginx.Port}/" } },
            }]),
        app => app.MapReverseProxy());

    private static HttpClient Client(ApplicationHost proxy, bool h2c) => new(new SocketsHttpHandler { MaxConnectionsPerServer = 8 })
    {
        BaseAddress = proxy.BaseAddress,
        DefaultRequestVersion = h2c ? HttpVersion.Version20 : HttpVersion.Version11,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Timeout = TimeSpan.FromSeconds(30),
    };

    [Test, CancelAfter(30_000)]
    public async Task GetBodiesArriveByteForByte([Values] bool h2c, CancellationToken token)
    {
        await using var proxy = await StartProxyAsync(h2c ? HttpProtocols.Http2 : HttpProtocols.Http1);
        using var client = Client(proxy, h2c);
        using (var small = await client.GetAsync("/small.txt", token))
        {
            Assert.That(small.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(small.Version, Is.EqualTo(client.DefaultRequestVersion));
            Assert.That(small.Headers.TryGetValues("Server", out var server) ? string.Join(",", server) : "", Does.StartWith("nginx"), "answered by nginx, through YARP");
            Assert.That(await small.Content.ReadAsStringAsync(token), Is.EqualTo("served by nginx\n"));
        }
        var bodies = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => client.GetByteArrayAsync("/big.bin", token)));
        foreach (var body in bodies)
        {
            Assert.That(body.Length, Is.EqualTo(_file.Length));
            Assert.That(body.AsSpan().SequenceEqual(_file), Is.True, "1 MiB file byte for byte");
        }
        using var missing = await client.GetAsync("/missing", token);
        Assert.That(missing.StatusCode, Is.EqualTo(HttpStatusCode.NotFound), "nginx's status passes through");
    }

    [Test, CancelAfter(30_000)]
    public async Task PostBodiesArriveByteForByte([Values] bool h2c, CancellationToken token)
    {
        await using var proxy = await StartProxyAsync(h2c ? HttpProtocols.Http2 : HttpProtocols.Http1);
        using var client = Client(proxy, h2c);
        foreach (int size in new[] { 1, 1000, 100_000, 1 << 20 })
        {
            var body = RandomNumberGenerator.GetBytes(size);
            using var response = await client.PostAsync("/echo", new ByteArrayContent(body), token);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), $"{size} bytes");
            var echoed = await response.Content.ReadAsByteArrayAsync(token);
            Assert.That(echoed.Length, Is.EqualTo(size));
            Assert.That(echoed.AsSpan().SequenceEqual(body), Is.True, $"{size} bytes byte for byte");
        }
        // Several 1 MiB uploads at once (streams of one h2c connection, or HTTP/1.1 connections).
        var uploads = Enumerable.Range(0, 4).Select(_ => RandomNumberGenerator.GetBytes(1 << 20)).ToArray();
        var echoes = await Task.WhenAll(uploads.Select(async upload =>
        {
            using var response = await client.PostAsync("/echo", new ByteArrayContent(upload), token);
            return await response.Content.ReadAsByteArrayAsync(token);
        }));
        for (int i = 0; i < uploads.Length; i++)
            Assert.That(echoes[i].AsSpan().SequenceEqual(uploads[i]), Is.True, $"concurrent upload {i} byte for byte");
    }
}
