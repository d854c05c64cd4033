using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using IoMux.Tests.Proxy;

namespace IoMux.Tests.Web;

/// <summary>The servers as the iomux command runs them: started, answering on loopback, stopped by SIGTERM with
/// exit code 0.</summary>
[NonParallelizable]
public sealed partial class ServerCommandTests
{
    [LibraryImport("libc")]
    private static partial int kill(int pid, int signal);

    [Test, CancelAfter(60_000)]
    public async Task IomuxHelloServeAndEchoAnswerAndStopOnSigterm()
    {
        var root = Directory.CreateTempSubdirectory("iomux-serve-cmd-").FullName;
        File.WriteAllText(Path.Combine(root, "page.txt"), "served by iomux");
        try
        {
            await Run(["hello"], async port =>
            {
                using var http = new HttpClient();
                Assert.That(await http.GetStringAsync($"http://127.0.0.1:{port}/"), Is.EqualTo("Hello, World!"));
            });
            await Run(["serve", root], async port =>
            {
                using var http = new HttpClient();
                Assert.That(await http.GetStringAsync($"http://127.0.0.1:{port}/page.txt"), Is.EqualTo("served by iomux"));
            });
            await Run(["echo"], async port =>
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync("127.0.0.1", port);
                await socket.SendAsync(Encoding.ASCII.GetBytes("ping"), SocketFlags.None);
                var buffer = new byte[4];
                int got = 0;
                while (got < 4)
                    got += await socket.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None);
                Assert.That(Encoding.ASCII.GetString(buffer), Is.EqualTo("ping"));
            });
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static async Task Run(string[] command, Func<int, Task> exercise)
    {
        int port = ProxyProcess.FreePort();
        var start = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "IoMux.Cli")) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in command.Concat(["--port", port.ToString(), "--threads", "2"]))
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        try
        {
            var line = await process.StandardError.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(20));
            Assert.That(line, Does.Contain($"listening on 127.0.0.1:{port} with 2 loop thread(s)"));
            await exercise(port);
            Assert.That(kill(process.Id, 15), Is.EqualTo(0));
            Assert.That(process.WaitForExit(10_000), Is.True, "SIGTERM did not stop the server");
            Assert.That(process.ExitCode, Is.EqualTo(0));
        }
        finally
        {
            if (!process.HasExited)
                process.Kill();
        }
    }
}
