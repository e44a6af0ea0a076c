print("prunekit")
