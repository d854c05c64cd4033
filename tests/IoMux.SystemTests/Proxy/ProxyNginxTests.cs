using System.Net;
using System.Security.Cryptography;

namespace IoMux.Tests.Proxy;

/// <summary>iomux-socket-proxyd in front of a real nginx, started by systemd-socket-activate as a service manager
/// would: 100 MiB down and up with checksums, and 500 concurrent keep-alive clients.</summary>
[Category("System")]
[NonParallelizable]
public sealed class ProxyNginxTests
{
    private NginxServer _nginx = null!;

    [OneTimeSetUp]
    public void StartNginx() => _nginx = NginxServer.Start();

    [OneTimeTearDown]
    public void StopNginx() => _nginx.Dispose();

    [Test, CancelAfter(180_000)]
    public async Task HundredMebibytesDownAndUpThroughTheProxyKeepTheirChecksums(CancellationToken cancel)
    {
        const long size = 100L << 20;
        var file = Path.Combine(_nginx.Root, "big.bin");
        await using (var output = File.Create(file))
            await WritePattern(output, size, seed: 11, cancel);
        string expected = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));

        using var proxy = ProxyProcess.Activated(_nginx.Target);
        using var http = new HttpClient { BaseAddress = new Uri($"http://{proxy.Endpoint}/"), Timeout = TimeSpan.FromSeconds(120) };

        using (var response = await http.GetAsync("big.bin", HttpCompletionOption.ResponseHeadersRead, cancel))
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            await using var body = await response.Content.ReadAsStreamAsync(cancel);
            Assert.That(Convert.ToHexString(await SHA256.HashDataAsync(body, cancel)), Is.EqualTo(expected), "download differs");
        }

        var upload = Path.Combine(Path.GetTempPath(), $"iomux-upload-{Guid.NewGuid():N}.bin");
        try
        {
            await using (var output = File.Create(upload))
                await WritePattern(output, size, seed: 12, cancel);
            string sent = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(upload)));
            await using var content = File.OpenRead(upload);
            using var put = await http.PutAsync("upload/received.bin", new StreamContent(content), cancel);
            Assert.That(put.StatusCode, Is.EqualTo(HttpStatusCode.Created).Or.EqualTo(HttpStatusCode.NoContent));
            var stored = Path.Combine(_nginx.Root, "upload", "received.bin");
            Assert.That(new FileInfo(stored).Length, Is.EqualTo(size));
            Assert.That(Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(stored))), Is.EqualTo(sent), "upload differs");
        }
        finally
        {
            File.Delete(upload);
        }
    }

    [Test, CancelAfter(120_000)]
    public async Task FiveHundredConcurrentKeepAliveClients(CancellationToken cancel)
    {
        const int clients = 500, requestsEach = 4;
        using var proxy = ProxyProcess.Activated("--connections-max=600", _nginx.Target);
        var handler = new SocketsHttpHandler { MaxConnectionsPerServer = clients, PooledConnectionLifetime = Timeout.InfiniteTimeSpan };
        using var http = new HttpClient(handler) { BaseAddress = new Uri($"http://{proxy.Endpoint}/"), Timeout = TimeSpan.FromSeconds(60) };
        int ok = 0;
        using var start = new SemaphoreSlim(0);
        var runs = Enumerable.Range(0, clients).Select(async _ =>
        {
            await start.WaitAsync(cancel);
            for (int i = 0; i < requestsEach; i++)
            {
                var page = await http.GetStringAsync("index.html", cancel);
                if (page.Contains("IoMux proxy test page"))
                    Interlocked.Increment(ref ok);
            }
        }).ToList();
        start.Release(clients);
        await Task.WhenAll(runs);
        Assert.That(ok, Is.EqualTo(clients * requestsEach));
        Assert.That(proxy.HasExited, Is.False);
    }

    private static async Task WritePattern(Stream output, long length, int seed, CancellationToken cancel)
    {
        var random = new Random(seed);
        var block = new byte[1 << 20];
        for (long written = 0; written < length; written += block.Length)
        {
            random.NextBytes(block);
            await output.WriteAsync(block.AsMemory(0, (int)Math.Min(block.Length, length - written)), cancel);
        }
    }
}
