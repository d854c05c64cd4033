using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace IoMux.Tests.AspNetCore;

/// <summary>
/// HTTP/2 on the transport, as clients use it: h2c with prior knowledge over http:// and h2 chosen by ALPN over TLS,
/// one connection carrying many concurrent streams and bodies larger than HTTP/2's flow-control windows. The same
/// tests run on Kestrel's socket transport as the reference.
/// </summary>
[TestFixtureSource(typeof(ApplicationTargets), nameof(ApplicationTargets.All))]
[NonParallelizable]
public sealed class Http2Tests(TransportTarget target)
{
    private const int Streams = 8;
    private X509Certificate2 _certificate = null!;

    [OneTimeSetUp]
    public void Certificate()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
        _certificate = ApplicationHost.SelfSignedCertificate();
    }

    [OneTimeTearDown]
    public void DisposeCertificate() => _certificate?.Dispose();

    /// <summary>The app: what protocol and ALPN the server saw, an upload's hash, a download, and a rendezvous that answers
    /// only once <see cref="Streams"/> requests are in the handler at the same time.</summary>
    private sealed class Probe
    {
        public int InFlight;
        public int MostInFlight;
        public readonly TaskCompletionSource AllArrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private async Task<(ApplicationHost Host, Probe Probe)> StartAsync(bool tls)
    {
        var probe = new Probe();
        // Cleartext needs Http2 alone (h2c with prior knowledge: Kestrel does no h2c upgrade); TLS offers both and
        // lets ALPN choose, as a production HTTPS endpoint does.
        var listen = tls ? ApplicationHost.Loopback(HttpProtocols.Http1AndHttp2, _certificate) : ApplicationHost.Loopback(HttpProtocols.Http2);
        var host = await ApplicationHost.StartAsync(target, listen, null, app =>
        {
            app.MapGet("/protocol", (HttpContext ctx) =>
            {
                var alpn = ctx.Features.Get<ITlsApplicationProtocolFeature>()?.ApplicationProtocol.ToArray() ?? [];
                return $"{ctx.Request.Protocol} alpn={System.Text.Encoding.ASCII.GetString(alpn)} {ctx.Connection.Id}";
            });
            // The upload's length and SHA-256, answered after the whole body is read. (Not an echo: a 1 MiB echo
            // through HttpClient.PostAsync over HTTP/2 hung on Kestrel's socket transport as on IoMux's, tried:
            // the client sends its whole body before reading the response, and the echo stops reading once the
            // client's stream window is full.)
            app.MapPost("/sha256", async (HttpContext ctx) =>
            {
                using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
                var buffer = new byte[16 * 1024];
                long total = 0;
                for (int n; (n = await ctx.Request.Body.ReadAsync(buffer, ctx.RequestAborted)) > 0; total += n)
                    sha.AppendData(buffer, 0, n);
                return $"{total} {Convert.ToHexString(sha.GetHashAndReset())}";
            });
            app.MapGet("/bytes/{count:int}", async (HttpContext ctx, int count) =>
            {
                ctx.Response.ContentType = "application/octet-stream";
                ctx.Response.ContentLength = count;
                await ctx.Response.Body.WriteAsync(TestApp.Pattern(count), ctx.RequestAborted);
            });
            app.MapGet("/rendezvous", async (HttpContext ctx) =>
            {
                int now = Interlocked.Increment(ref probe.InFlight);
                InterlockedMax(ref probe.MostInFlight, now);
                if (now == Streams)
                    probe.AllArrived.TrySetResult();
                // Bounded: if the streams are serialised, the handler gives up and the test sees fewer in flight.
                await Task.WhenAny(probe.AllArrived.Task, Task.Delay(TimeSpan.FromSeconds(10), ctx.RequestAborted));
                Interlocked.Decrement(ref probe.InFlight);
                return ctx.Connection.Id;
            });
        });
        return (host, probe);
    }

    private static void InterlockedMax(ref int location, int value)
    {
        for (int seen = Volatile.Read(ref location); value > seen; seen = Volatile.Read(ref location))
            if (Interlocked.CompareExchange(ref location, value, seen) == seen)
                return;
    }

    /// <summary>An HTTP/2-only client (RequestVersionExact: no silent fall-back to HTTP/1.1) on one connection.</summary>
    private HttpClient Client(ApplicationHost host, Version? version = null) => new(new SocketsHttpHandler
    {
        EnableMultipleHttp2Connections = false,
        SslOptions = { RemoteCertificateValidationCallback = (_, cert, _, _) => cert?.GetCertHashString() == _certificate.GetCertHashString() },
    })
    {
        BaseAddress = host.BaseAddress,
        DefaultRequestVersion = version ?? HttpVersion.Version20,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Timeout = TimeSpan.FromSeconds(30),
    };

    [Test, CancelAfter(30_000)]
    public async Task H2cWithPriorKnowledgeAnswersOverHttp2(CancellationToken token)
    {
        var (host, _) = await StartAsync(tls: false);
        await using var _ = host;
        Assert.That(host.BaseAddress.Scheme, Is.EqualTo("http"));
        using var client = Client(host);
        using var response = await client.GetAsync("/protocol", token);
        Assert.That(response.Version, Is.EqualTo(HttpVersion.Version20));
        Assert.That(await response.Content.ReadAsStringAsync(token), Does.StartWith("HTTP/2 alpn= "), "the server saw HTTP/2 without TLS");
    }

    [Test, CancelAfter(30_000)]
    public async Task H2OverTlsIsChosenByAlpn(CancellationToken token)
    {
        var (host, _) = await StartAsync(tls: true);
        await using var _ = host;
        Assert.That(host.BaseAddress.Scheme, Is.EqualTo("https"));
        using (var client = Client(host))
        {
            using var response = await client.GetAsync("/protocol", token);
            Assert.That(response.Version, Is.EqualTo(HttpVersion.Version20));
            Assert.That(await response.Content.ReadAsStringAsync(token), Does.StartWith("HTTP/2 alpn=h2 "));
        }
        // The same listener still gives an HTTP/1.1 client HTTP/1.1: ALPN chose, not the listener's configuration.
        using (var client = Client(host, HttpVersion.Version11))
        {
            using var response = await client.GetAsync("/protocol", token);
            Assert.That(response.Version, Is.EqualTo(HttpVersion.Version11));
            // (HttpClient offers no ALPN list for an HTTP/1.1-only request: the server reports none, or http/1.1.)
            Assert.That(await response.Content.ReadAsStringAsync(token), Does.StartWith("HTTP/1.1 ").And.Not.Contain("alpn=h2"));
        }
    }

    [Test, CancelAfter(30_000)]
    public async Task ConcurrentStreamsShareOneConnection([Values] bool tls, CancellationToken token)
    {
        var (host, probe) = await StartAsync(tls);
        await using var _ = host;
        using var client = Client(host);
        var responses = await Task.WhenAll(Enumerable.Range(0, Streams).Select(async _ =>
        {
            using var response = await client.GetAsync("/rendezvous", token);
            return (response.Version, response.StatusCode, Id: await response.Content.ReadAsStringAsync(token));
        }));
        Assert.That(probe.MostInFlight, Is.EqualTo(Streams), "every stream in the app at once");
        Assert.That(responses.Select(r => r.Version), Is.All.EqualTo(HttpVersion.Version20));
        Assert.That(responses.Select(r => r.StatusCode), Is.All.EqualTo(HttpStatusCode.OK));
        Assert.That(responses.Select(r => r.Id).Distinct().Count(), Is.EqualTo(1), "one connection: " + string.Join(", ", responses.Select(r => r.Id)));
    }

    [Test, CancelAfter(30_000)]
    public async Task BodiesLargerThanTheFlowControlWindowsArriveWhole([Values] bool tls, CancellationToken token)
    {
        // HTTP/2's initial windows are 64 KiB per stream (Kestrel's: 768 KiB per stream, 1 MiB per connection): a
        // 1 MiB upload and a 4 MiB download need WINDOW_UPDATE frames both ways, on several streams at once.
        var (host, _) = await StartAsync(tls);
        await using var _ = host;
        using var client = Client(host);
        var upload = System.Security.Cryptography.RandomNumberGenerator.GetBytes(1 << 20);
        var uploaded = System.Text.Encoding.ASCII.GetBytes($"{upload.Length} {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(upload))}");
        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(async i =>
        {
            if (i % 2 == 0)
            {
                using var response = await client.PostAsync("/sha256", new ByteArrayContent(upload), token);
                return (response.Version, Body: await response.Content.ReadAsByteArrayAsync(token), Expected: uploaded);
            }
            using var download = await client.GetAsync($"/bytes/{4 << 20}", token);
            return (download.Version, Body: await download.Content.ReadAsByteArrayAsync(token), Expected: TestApp.Pattern(4 << 20));
        }));
        foreach (var (version, body, expected) in results)
        {
            Assert.That(version, Is.EqualTo(HttpVersion.Version20));
            Assert.That(body.Length, Is.EqualTo(expected.Length));
            Assert.That(body.AsSpan().SequenceEqual(expected), Is.True, "byte for byte (the upload: its length and SHA-256)");
        }
    }
}
